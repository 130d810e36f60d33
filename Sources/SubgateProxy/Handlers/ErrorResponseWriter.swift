import NIOCore
import NIOHTTP1
import SubgateCore

/// Turns a `ProxyRejection` into HTTP response parts (or raw bytes, where no encoder is in front).
enum ErrorResponseWriter {
    /// The response head and body for `rejection`, for an HTTP/1.x client of `version`.
    static func parts(
        _ rejection: ProxyRejection,
        version: HTTPVersion,
        close: Bool,
        allocator: ByteBufferAllocator
    ) -> (HTTPResponseHead, ByteBuffer) {
        let body = allocator.buffer(string: rejection.jsonBody)
        var headers = HTTPHeaders()
        headers.reserveCapacity(4 + rejection.extraHeaders.count)
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(body.readableBytes))
        for (name, value) in rejection.extraHeaders {
            headers.add(name: name, value: value)
        }
        if close {
            headers.add(name: "connection", value: "close")
        } else if version.minor == 0 {
            headers.add(name: "connection", value: "keep-alive")
        }
        let responseVersion: HTTPVersion = version.major == 1 && version.minor == 0 ? .http1_0 : .http1_1
        return (HTTPResponseHead(version: responseVersion, status: rejection.status, headers: headers), body)
    }

    /// A whole `HTTP/1.1` answer with `connection: close`, as bytes.
    static func writeRaw(_ rejection: ProxyRejection, into buffer: inout ByteBuffer) {
        let body = rejection.jsonBody
        buffer.writeString("HTTP/1.1 \(rejection.status.code) \(rejection.status.reasonPhrase)\r\n")
        buffer.writeString("content-type: application/json\r\n")
        buffer.writeString("content-length: \(body.utf8.count)\r\n")
        for (name, value) in rejection.extraHeaders {
            buffer.writeString("\(name): \(value)\r\n")
        }
        buffer.writeString("connection: close\r\n\r\n")
        buffer.writeString(body)
    }
}
