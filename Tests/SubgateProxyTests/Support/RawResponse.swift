import Foundation

/// One HTTP/1.x answer cut out of raw bytes, for asserting on exactly what went over the wire
/// (interim 100s, pipelined answers in order, Subgate's JSON error bodies, truncated bodies).
struct RawResponse: Sendable, CustomStringConvertible {
    var version: String
    var status: Int
    var headers: [(name: String, value: String)]
    var body: String
    /// The body ended where its framing says (Content-Length reached, last chunk read, or no body).
    var complete: Bool

    /// Values of `name`, case-insensitively.
    func headers(_ name: String) -> [String] {
        self.headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }

    func header(_ name: String) -> String? { self.headers(name).first }

    /// The `error.code` of a SPEC §3 JSON rejection body, if the body is one.
    var errorCode: String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(self.body.utf8)) as? [String: Any],
            object["success"] as? Bool == false,
            let error = object["error"] as? [String: Any],
            error["message"] is String
        else { return nil }
        return error["code"] as? String
    }

    /// Whether the answer is a SPEC §3 rejection: JSON content type and
    /// `{"success":false,"error":{"code":code,"message":…}}`.
    func isRejection(status: Int, code: String) -> Bool {
        self.status == status && self.errorCode == code
            && (self.header("content-type") ?? "").hasPrefix("application/json")
    }

    var description: String {
        "HTTP \(self.status) \(self.headers.map { "\($0.name): \($0.value)" }) body=\(self.body.prefix(300))\(self.complete ? "" : " (incomplete)")"
    }

    /// Every answer in `text`, in order. `headRequests` holds the positions (among final
    /// answers, from 0) of answers to HEAD requests, which have no body whatever their headers say.
    static func parseAll(_ text: String, headRequests: Set<Int> = []) -> [RawResponse] {
        var out: [RawResponse] = []
        var rest = Substring(text)
        var finalIndex = 0
        while let headEnd = rest.range(of: "\r\n\r\n") {
            let headText = rest[rest.startIndex..<headEnd.lowerBound]
            var lines = headText.components(separatedBy: "\r\n")
            guard !lines.isEmpty else { break }
            let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
            guard statusLine.count >= 2, let status = Int(statusLine[1]) else { break }
            let headers = lines.compactMap { line -> (name: String, value: String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            }
            rest = rest[headEnd.upperBound...]
            var response = RawResponse(version: String(statusLine[0]), status: status, headers: headers, body: "", complete: true)
            let interim = status >= 100 && status < 200
            let bodiless = interim || status == 204 || status == 304 || headRequests.contains(finalIndex)
            if !interim { finalIndex += 1 }
            if bodiless {
                out.append(response)
                continue
            }
            if let length = response.header("content-length").flatMap({ Int($0) }) {
                let available = rest.utf8.count
                let take = min(length, available)
                let end = rest.utf8.index(rest.startIndex, offsetBy: take)
                response.body = String(rest[rest.startIndex..<end])
                response.complete = take == length
                rest = rest[end...]
            } else if (response.header("transfer-encoding") ?? "").lowercased().contains("chunked") {
                var body = ""
                var complete = false
                while let sizeEnd = rest.range(of: "\r\n") {
                    let sizeText = rest[rest.startIndex..<sizeEnd.lowerBound].split(separator: ";").first ?? ""
                    guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { break }
                    rest = rest[sizeEnd.upperBound...]
                    if size == 0 {
                        // Trailers, then the empty line.
                        if let trailerEnd = rest.range(of: "\r\n"), trailerEnd.lowerBound == rest.startIndex {
                            rest = rest[trailerEnd.upperBound...]
                        } else if let trailerEnd = rest.range(of: "\r\n\r\n") {
                            rest = rest[trailerEnd.upperBound...]
                        }
                        complete = true
                        break
                    }
                    guard rest.utf8.count >= size + 2 else {
                        body += String(rest)
                        rest = rest[rest.endIndex...]
                        break
                    }
                    let end = rest.utf8.index(rest.startIndex, offsetBy: size)
                    body += String(rest[rest.startIndex..<end])
                    rest = rest[rest.utf8.index(end, offsetBy: 2)...]
                }
                response.body = body
                response.complete = complete
            } else {
                // Delimited by the close of the connection.
                response.body = String(rest)
                response.complete = false
                rest = rest[rest.endIndex...]
            }
            out.append(response)
        }
        return out
    }

    /// The final (non-1xx) answers in `text`.
    static func finals(_ text: String) -> [RawResponse] {
        Self.parseAll(text).filter { $0.status >= 200 }
    }
}
