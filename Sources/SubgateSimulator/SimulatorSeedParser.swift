import Foundation
import SubgateCore

/// The seed-file parser of `subgate simulate --seed FILE`: pure, strict, every problem in
/// one pass, each naming the file, the line and the key (`ConfigError`, as Subgate's own
/// configuration does).
///
/// The grammar is Subgate's configuration grammar (`#` comment lines, one `key = value` per
/// line, whitespace trimmed, no duplicates), with dotted keys `KIND.NAME.FIELD`:
/// ```
/// seller.acme.key            = am_k_acme
/// listing.lst_run.seller     = acme
/// token.healthy.usage_limit  = 100
/// tenant.workspace_123.plan  = pro
/// pool.ws_api.tenant         = workspace_123
/// addon.ws_topup.credits     = 500
/// crovver_key                = sk_test_acme
/// ```
/// NAME is 1–64 letters, digits, `_` or `-`. An entry exists once any of its keys is
/// set; required fields missing are reported at its first line. docs/simulator.md lists
/// every field.
public enum SimulatorSeedParser {
    /// The fields of each kind; the first ones listed are required where the docs say so.
    static let fields: [String: [String]] = [
        "seller": ["key", "gateway_secret"],
        "listing": ["seller", "endpoint", "price_usd", "gateway_secret"],
        "token": ["seller", "listing", "subscriber", "usage_limit", "usage_count", "expires_at", "status", "raw"],
        "tenant": ["plan"],
        "pool": ["tenant", "pool_key", "limit", "credits", "expires_at"],
        "addon": ["tenant", "pool_key", "credits", "expires_at"],
    ]
    /// Keys without a dot.
    static let globalKeys = ["crovver_key"]
    /// Fields whose values are secrets: never quoted back.
    static let secretFields: Set<String> = ["key", "gateway_secret", "raw"]

    /// Parses a seed file's text; `file` is used in messages only.
    public static func parse(_ text: String, file: String) -> Result<SimulatorSeed, ConfigErrors> {
        var parser = Parser(file: file)
        parser.read(text)
        let seed = parser.build()
        if parser.errors.isEmpty { return .success(seed) }
        // By line; errors of one line keep the order found.
        let sorted = parser.errors.enumerated().sorted { ($0.element.line ?? 0, $0.offset) < ($1.element.line ?? 0, $1.offset) }
        return .failure(ConfigErrors(sorted.map(\.element)))
    }

    /// Reads `path` and parses it; a file that cannot be read is one error naming it.
    public static func load(file path: String) -> Result<SimulatorSeed, ConfigErrors> {
        let text: String
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard data.count <= 1 << 20 else {
                return .failure(ConfigErrors([ConfigError(file: path, line: nil, key: nil, message: "the seed file is larger than 1 MiB")]))
            }
            guard let decoded = String(data: data, encoding: .utf8) else {
                return .failure(ConfigErrors([ConfigError(file: path, line: nil, key: nil, message: "the seed file is not UTF-8 text")]))
            }
            text = decoded
        } catch {
            let reason = (error as NSError).localizedDescription
            return .failure(ConfigErrors([ConfigError(file: path, line: nil, key: nil, message: "cannot read the seed file (\(reason)); check the path given to --seed")]))
        }
        return self.parse(text, file: path)
    }

    // MARK: - Parsing

    /// One `key = value` line.
    struct Setting {
        var key: String
        var value: String
        var line: Int
    }

    /// An entry: `KIND.NAME` and its fields.
    struct Entry {
        var kind: String
        var name: String
        /// The line of its first key.
        var line: Int
        var fields: [String: Setting] = [:]
    }

    struct Parser {
        let file: String
        var errors: [ConfigError] = []
        var entries: [Entry] = []
        var globals: [String: Setting] = [:]
        private var seen: [String: Int] = [:]

        init(file: String) {
            self.file = file
        }

        mutating func fail(_ line: Int?, _ key: String?, _ message: String) {
            self.errors.append(ConfigError(file: self.file, line: line, key: key, message: message))
        }

        mutating func read(_ text: String) {
            var scalars = Substring(text).unicodeScalars
            if scalars.first == "\u{FEFF}" { scalars.removeFirst() }
            let lines = Substring(scalars).split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            for (index, raw) in lines.enumerated() {
                let number = index + 1
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.isEmpty || line.hasPrefix("#") { continue }
                guard let equals = line.firstIndex(of: "=") else {
                    self.fail(number, nil, "this line has no `=`; write entries as `kind.name.field = value`, and start comment lines with `#`")
                    continue
                }
                let key = line[..<equals].trimmingCharacters(in: .whitespaces)
                let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                guard !key.isEmpty else {
                    self.fail(number, nil, "this line has no key before `=`; write entries as `kind.name.field = value`")
                    continue
                }
                if let space = key.firstIndex(where: { $0 == " " || $0 == "\t" }) {
                    self.fail(number, String(key[..<space]), "a key is a single word followed by `=`; write entries as `kind.name.field = value`")
                    continue
                }
                if let first = self.seen[key] {
                    self.fail(number, key, "is set twice, on line \(first) and again here; keep one of them")
                    continue
                }
                self.seen[key] = number
                guard !value.isEmpty else {
                    self.fail(number, key, "has no value; give it one, or delete the line")
                    continue
                }
                self.add(Setting(key: key, value: value, line: number))
            }
        }

        private mutating func add(_ setting: Setting) {
            let parts = setting.key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            if parts.count == 1 {
                guard SimulatorSeedParser.globalKeys.contains(setting.key) else {
                    self.fail(setting.line, setting.key, "unknown key; keys are kind.name.field (kinds: \(SimulatorSeedParser.kinds)) or \(SimulatorSeedParser.globalKeys.joined(separator: ", "))")
                    return
                }
                self.globals[setting.key] = setting
                return
            }
            guard parts.count == 3 else {
                self.fail(setting.line, setting.key, "a key is kind.name.field, three parts joined by dots, such as token.healthy.usage_limit")
                return
            }
            let (kind, name, field) = (parts[0], parts[1], parts[2])
            guard let known = SimulatorSeedParser.fields[kind] else {
                self.fail(setting.line, setting.key, "unknown kind `\(kind)`; the kinds are \(SimulatorSeedParser.kinds)")
                return
            }
            guard SimulatorSeedParser.isName(name) else {
                self.fail(setting.line, setting.key, "the name `\(name)` must be 1 to 64 letters, digits, _ or -")
                return
            }
            guard known.contains(field) else {
                self.fail(setting.line, setting.key, "unknown field `\(field)`; a \(kind) takes \(known.joined(separator: ", "))")
                return
            }
            if let index = self.entries.firstIndex(where: { $0.kind == kind && $0.name == name }) {
                self.entries[index].fields[field] = setting
            } else {
                var entry = Entry(kind: kind, name: name, line: setting.line)
                entry.fields[field] = setting
                self.entries.append(entry)
            }
        }

        // MARK: - Building

        mutating func build() -> SimulatorSeed {
            var seed = SimulatorSeed()
            // Sellers first: listings and tokens refer to them.
            var sellersByID: [String: SimulatedSeller] = [CrochetStore.demoSellerID: SimulatedSeller(sellerID: CrochetStore.demoSellerID, sellerKey: CrochetStore.demoSellerKey)]
            var sellerKeys: [String: String] = [CrochetStore.demoSellerKey: "the built-in demo seller"]
            for entry in self.entries(of: "seller") {
                guard let key = self.required(entry, "key", "an am_k_… seller key") else { continue }
                guard CrochetStore.isSellerKey(key.value) else {
                    self.fail(key.line, key.key, "must start with am_k_ (the value is not shown: it is a secret)")
                    continue
                }
                if entry.name == CrochetStore.demoSellerID {
                    self.fail(entry.line, "seller.\(entry.name)", "the seller `demo` is built in (key am_k_demo); choose another name")
                    continue
                }
                if let owner = sellerKeys[key.value] {
                    self.fail(key.line, key.key, "this seller key is already \(owner)'s; each seller has its own key")
                    continue
                }
                sellerKeys[key.value] = "seller.\(entry.name)"
                let seller = SimulatedSeller(sellerID: entry.name, sellerKey: key.value, gatewaySecret: entry.fields["gateway_secret"]?.value)
                sellersByID[entry.name] = seller
                seed.sellers.append(seller)
            }

            var listingSellers: [String: String] = [:]
            for entry in self.entries(of: "listing") {
                let seller = self.seller(entry, sellersByID, required: true)
                let endpoint = self.required(entry, "endpoint", "the seller's http:// URL that paid calls are POSTed to")
                let price = self.required(entry, "price_usd", "the price of one call in dollars, such as 0.25")
                guard let seller, let endpoint, let price else { continue }
                guard GatewayStore.isEndpoint(endpoint.value) else {
                    self.fail(endpoint.line, endpoint.key, "must be an http:// or https:// URL with a host and no query, such as http://127.0.0.1:8080/run")
                    continue
                }
                guard let micros = MicroDollars.parse(price.value), micros > 0 else {
                    self.fail(price.line, price.key, "must be dollars above 0 with at most six decimals and at most 1000000, such as 0.25")
                    continue
                }
                listingSellers[entry.name] = seller.sellerID
                seed.listings.append(
                    SimulatedListing(listingID: entry.name, sellerID: seller.sellerID, endpoint: endpoint.value, priceMicroUSD: micros, gatewaySecret: entry.fields["gateway_secret"]?.value)
                )
            }

            var rawTokens: [String: String] = [:]
            for entry in self.entries(of: "token") {
                var ok = true
                let listingID = entry.fields["listing"]?.value ?? "lst_demo"
                var seller = entry.fields["seller"] == nil ? nil : self.seller(entry, sellersByID, required: true)
                if entry.fields["seller"] != nil && seller == nil { ok = false }
                if let listingSeller = listingSellers[listingID] {
                    if let chosen = seller, chosen.sellerID != listingSeller, let line = entry.fields["seller"] {
                        self.fail(line.line, line.key, "listing \(listingID) is seller \(listingSeller)'s; a token is for its listing's seller (leave seller out to take it from the listing)")
                        ok = false
                    }
                    seller = seller ?? sellersByID[listingSeller]
                }
                let usageLimit: Int?
                switch entry.fields["usage_limit"] {
                case nil: usageLimit = 100
                case let setting? where setting.value == "unlimited": usageLimit = nil
                case let setting?:
                    usageLimit = self.integer(setting, in: 0...Int(Int32.max), rule: "must be an integer ≥ 0, or unlimited")
                    if usageLimit == nil { ok = false }
                }
                var usageCount = 0
                if let setting = entry.fields["usage_count"] {
                    if let count = self.integer(setting, in: 0...Int(Int32.max), rule: "must be an integer ≥ 0") { usageCount = count } else { ok = false }
                }
                let expiresAt = self.time(entry.fields["expires_at"], ok: &ok)
                let status = entry.fields["status"]?.value ?? SimulatedToken.active
                if let setting = entry.fields["status"], !SimulatedToken.statuses.contains(status) {
                    self.fail(setting.line, setting.key, "must be active, expired or revoked")
                    ok = false
                }
                let raw = entry.fields["raw"]
                if let raw {
                    if !raw.value.hasPrefix(RawToken.prefix) || raw.value.count <= RawToken.prefix.count {
                        self.fail(raw.line, raw.key, "must start with cro_sub_ (the value is not shown: it is a secret); leave it out to have one generated")
                        ok = false
                    } else if let other = rawTokens[raw.value] {
                        self.fail(raw.line, raw.key, "is the same raw token as \(other)'s; each token needs its own")
                        ok = false
                    } else {
                        rawTokens[raw.value] = "token.\(entry.name)"
                    }
                }
                guard ok else { continue }
                seed.tokens.append(
                    SimulatorSeed.Token(
                        name: entry.name,
                        sellerKey: (seller ?? sellersByID[CrochetStore.demoSellerID])?.sellerKey ?? CrochetStore.demoSellerKey,
                        listingID: listingID,
                        subscriberID: entry.fields["subscriber"]?.value ?? "usr_\(entry.name)",
                        usageLimit: usageLimit,
                        usageCount: usageCount,
                        expiresAt: expiresAt,
                        status: status,
                        raw: raw?.value
                    )
                )
            }

            if let key = self.globals["crovver_key"] {
                if key.value.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f }) {
                    seed.crovverKeys.append(key.value)
                } else {
                    self.fail(key.line, key.key, "must be visible ASCII without spaces (the value is not shown: it is a secret)")
                }
            }

            var tenants: Set<String> = []
            for entry in self.entries(of: "tenant") {
                tenants.insert(entry.name)
                seed.tenants.append(SimulatorSeed.Tenant(tenantID: entry.name, plan: entry.fields["plan"]?.value ?? "default"))
            }
            var pools: Set<String> = []
            for entry in self.entries(of: "pool") {
                var ok = true
                guard let tenant = self.tenant(entry, tenants) else { continue }
                let poolKey = entry.fields["pool_key"]?.value ?? entry.name
                if let setting = entry.fields["pool_key"], !SimulatorSeedParser.isName(poolKey) {
                    self.fail(setting.line, setting.key, "must be 1 to 64 letters, digits, _ or -")
                    ok = false
                }
                let limit = SimulatedCreditLimit(rawValue: entry.fields["limit"]?.value ?? "hard")
                if limit == nil, let setting = entry.fields["limit"] {
                    self.fail(setting.line, setting.key, "must be hard or soft")
                    ok = false
                }
                let credits = self.required(entry, "credits", "the plan's base credits, an integer ≥ 0").flatMap {
                    self.integer($0, in: 0...CrovverStore.maxAmount, rule: "must be an integer between 0 and \(CrovverStore.maxAmount)")
                }
                let expiresAt = self.time(entry.fields["expires_at"], ok: &ok)
                guard ok, let limit, let credits else { continue }
                guard pools.insert("\(tenant)\n\(poolKey)").inserted else {
                    self.fail(entry.line, "pool.\(entry.name)", "tenant \(tenant) already has a pool \(poolKey); pool keys are unique per tenant")
                    continue
                }
                seed.pools.append(SimulatorSeed.Pool(tenantID: tenant, poolKey: poolKey, limit: limit, credits: credits, expiresAt: expiresAt))
            }
            for entry in self.entries(of: "addon") {
                var ok = true
                guard let tenant = self.tenant(entry, tenants) else { continue }
                guard let poolKey = self.required(entry, "pool_key", "the tenant's pool the credits are added to") else { continue }
                let credits = self.required(entry, "credits", "the add-on's credits, an integer ≥ 0").flatMap {
                    self.integer($0, in: 0...CrovverStore.maxAmount, rule: "must be an integer between 0 and \(CrovverStore.maxAmount)")
                }
                let expiresAt = self.time(entry.fields["expires_at"], ok: &ok)
                guard pools.contains("\(tenant)\n\(poolKey.value)") else {
                    self.fail(poolKey.line, poolKey.key, "tenant \(tenant) has no pool \(poolKey.value); define it with pool.NAME.tenant = \(tenant) and pool.NAME.pool_key = \(poolKey.value)")
                    continue
                }
                guard ok, let credits else { continue }
                seed.addons.append(SimulatorSeed.Addon(tenantID: tenant, poolKey: poolKey.value, credits: credits, expiresAt: expiresAt))
            }
            return seed
        }

        // MARK: - Fields

        private func entries(of kind: String) -> [Entry] {
            self.entries.filter { $0.kind == kind }
        }

        private mutating func required(_ entry: Entry, _ field: String, _ what: String) -> Setting? {
            if let setting = entry.fields[field] { return setting }
            self.fail(entry.line, "\(entry.kind).\(entry.name).\(field)", "is required: \(what)")
            return nil
        }

        private mutating func seller(_ entry: Entry, _ sellers: [String: SimulatedSeller], required: Bool) -> SimulatedSeller? {
            guard let setting = required ? self.required(entry, "seller", "a seller's name (seller.NAME.key), or demo") : entry.fields["seller"] else {
                return nil
            }
            guard let seller = sellers[setting.value] else {
                self.fail(setting.line, setting.key, "no seller `\(setting.value)`; define it with seller.\(setting.value).key = am_k_…, or use demo")
                return nil
            }
            return seller
        }

        private mutating func tenant(_ entry: Entry, _ tenants: Set<String>) -> String? {
            guard let setting = self.required(entry, "tenant", "the tenant's id (declared with tenant.ID.plan = …)") else { return nil }
            guard tenants.contains(setting.value) else {
                self.fail(setting.line, setting.key, "no tenant `\(setting.value)`; declare it with tenant.\(setting.value).plan = …")
                return nil
            }
            return setting.value
        }

        private mutating func integer(_ setting: Setting, in range: ClosedRange<Int>, rule: String) -> Int? {
            guard setting.value.allSatisfy(\.isASCIIDigit), let value = Int(setting.value), range.contains(value) else {
                self.fail(setting.line, setting.key, rule)
                return nil
            }
            return value
        }

        /// `never`, an ISO-8601 instant, or `+N` / `-N` with `s`, `m`, `h` or `d` from when
        /// the seed is applied.
        private mutating func time(_ setting: Setting?, ok: inout Bool) -> SimulatorSeed.Time? {
            guard let setting, setting.value != "never" else { return nil }
            if let time = SimulatorSeedParser.relative(setting.value) { return time }
            if let date = ISO8601.parse(setting.value) { return .absolute(date) }
            self.fail(setting.line, setting.key, "must be never, an ISO-8601 time such as 2026-04-17T00:00:00Z, or a time from the start such as +30d or -1h (units s, m, h, d)")
            ok = false
            return nil
        }
    }

    static var kinds: String { self.fields.keys.sorted().joined(separator: ", ") }

    static func isName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-") }
    }

    /// `+30d`, `-1h`, `+90s`: seconds from when the seed is applied.
    static func relative(_ text: String) -> SimulatorSeed.Time? {
        guard let sign = text.first, sign == "+" || sign == "-", let unit = text.last else { return nil }
        let digits = text.dropFirst().dropLast()
        guard !digits.isEmpty, digits.count <= 6, digits.allSatisfy(\.isASCIIDigit), let amount = Int(digits) else { return nil }
        let scale: Int
        switch unit {
        case "s": scale = 1
        case "m": scale = 60
        case "h": scale = 3600
        case "d": scale = 86_400
        default: return nil
        }
        return .relative(seconds: (sign == "-" ? -1 : 1) * amount * scale)
    }
}
