import Foundation

/// Reading the admin API's JSON bodies strictly: an empty body is `{}`, an unknown field is
/// a 400, so a typo never silently falls back to a default. Each failure is the seed's
/// error body with a message naming the field and what it must be.
enum AdminBody {
    /// The members of a JSON object body (an empty body is `{}`); unknown names are a 400.
    static func object(_ body: Data, allowed: [String]) throws(SimulatorResponse) -> [String: JSONValue] {
        let json = body.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) ? .object([]) : JSONValue.parse(body)
        guard let json else {
            throw .error(.badRequest, "BAD_REQUEST", "The body must be a JSON object (or empty).")
        }
        return try self.members(json, allowed: allowed, of: "The body")
    }

    /// The members of a nested JSON object; unknown names are a 400.
    static func members(_ json: JSONValue, allowed: [String], of what: String) throws(SimulatorResponse) -> [String: JSONValue] {
        guard case .object(let members) = json else {
            throw .error(.badRequest, "BAD_REQUEST", "\(what) must be a JSON object.")
        }
        var fields: [String: JSONValue] = [:]
        for member in members {
            guard allowed.contains(member.key) else {
                throw .error(.badRequest, "BAD_REQUEST", "Unknown field \(member.key) in \(what.lowercased()); the fields are \(allowed.joined(separator: ", ")).")
            }
            fields[member.key] = member.value
        }
        return fields
    }

    static func string(_ fields: [String: JSONValue], _ name: String, default value: String) throws(SimulatorResponse) -> String {
        switch fields[name] {
        case nil: return value
        case .string(let text)? where !text.isEmpty: return text
        default: throw self.badField(name, "must be a non-empty string")
        }
    }

    /// A non-empty string, or nil when absent or null.
    static func optionalString(_ fields: [String: JSONValue], _ name: String) throws(SimulatorResponse) -> String? {
        switch fields[name] {
        case nil, .null?: return nil
        case .string(let text)? where !text.isEmpty: return text
        default: throw self.badField(name, "must be a non-empty string")
        }
    }

    static func requiredString(_ fields: [String: JSONValue], _ name: String) throws(SimulatorResponse) -> String {
        guard let value = try self.optionalString(fields, name) else {
            throw self.badField(name, "is required: a non-empty string")
        }
        return value
    }

    static func optionalInt(_ fields: [String: JSONValue], _ name: String, in range: ClosedRange<Int>) throws(SimulatorResponse) -> Int? {
        switch fields[name] {
        case nil, .null?: return nil
        case .int(let value)? where range.contains(value): return value
        default:
            let rule = range.upperBound == Int.max
                ? "must be an integer ≥ \(range.lowerBound)"
                : "must be an integer between \(range.lowerBound) and \(range.upperBound)"
            throw self.badField(name, rule)
        }
    }

    static func bool(_ fields: [String: JSONValue], _ name: String) throws(SimulatorResponse) -> Bool {
        switch fields[name] {
        case nil, .null?: return false
        case .bool(let value)?: return value
        default: throw self.badField(name, "must be true or false")
        }
    }

    /// An ISO-8601 time, or nil when absent or null.
    static func optionalDate(_ fields: [String: JSONValue], _ name: String) throws(SimulatorResponse) -> Date? {
        switch fields[name] {
        case nil, .null?: return nil
        case .string(let text)?:
            guard let date = ISO8601.parse(text) else { throw self.badField(name, "must be an ISO-8601 time such as 2026-04-17T00:00:00Z, or null") }
            return date
        default: throw self.badField(name, "must be an ISO-8601 time such as 2026-04-17T00:00:00Z, or null")
        }
    }

    static func badField(_ name: String, _ rule: String) -> SimulatorResponse {
        .error(.badRequest, "BAD_REQUEST", "\(name) \(rule).")
    }
}
