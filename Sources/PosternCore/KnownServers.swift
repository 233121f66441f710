/// The mediator's trust-on-first-use record (README, "TLS and pinning"): one `HOST:PORT FINGERPRINT`
/// line per server, `#` comments. A server not in it is trusted once, and recorded only after it has
/// proved it knows the mediator's secret; from then on a different key is refused.
public struct KnownServers: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var server: String
        public var fingerprint: KeyFingerprint
    }

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    public private(set) var entries: [Entry] = []

    public init() {}

    public init(parsing text: String, source: String) throws {
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw).trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2, let fingerprint = KeyFingerprint(parsing: String(fields[1])) else {
                throw ParseError(description: "\(source) line \(number + 1): expected 'HOST:PORT sha256:HEX'")
            }
            let server = String(fields[0])
            if let existing = self.fingerprint(for: server), existing != fingerprint {
                throw ParseError(description: "\(source) line \(number + 1): \(server) is listed twice with different keys")
            }
            if self.fingerprint(for: server) == nil { entries.append(Entry(server: server, fingerprint: fingerprint)) }
        }
    }

    public func fingerprint(for server: String) -> KeyFingerprint? {
        entries.first { $0.server == server }?.fingerprint
    }

    /// Adds a first-seen server. A server already known keeps its key: changing a pin is a human's job.
    public mutating func record(_ fingerprint: KeyFingerprint, for server: String) {
        guard self.fingerprint(for: server) == nil else { return }
        entries.append(Entry(server: server, fingerprint: fingerprint))
    }

    public func rendered() -> String {
        var text = "# postern known servers: HOST:PORT and the SHA-256 of its TLS public key.\n"
        text += "# Written on first successful authentication; edit by hand only to accept a new server key.\n"
        for e in entries { text += "\(e.server) \(e.fingerprint)\n" }
        return text
    }
}
