import PosternCore

/// Which mediators may connect and with what secret. A secret file holds either one line, the secret
/// shared by every mediator (any valid name is accepted), or `NAME SECRET` lines, one secret per
/// mediator (other names are refused as unknown).
public struct SecretBook: Sendable, Equatable, CustomStringConvertible {
    public var shared: [UInt8]?
    public var perMediator: [String: [UInt8]]

    public init(shared: [UInt8]?, perMediator: [String: [UInt8]] = [:]) {
        self.shared = shared
        self.perMediator = perMediator
    }

    public func secret(for name: String) -> [UInt8]? {
        perMediator[name] ?? shared
    }

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Parses the text of a secret file (see the type's comment).
    public static func parse(_ text: String, source: String) throws -> SecretBook {
        // Numbered before comments and blank lines are dropped, so errors name the file's own line.
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated()
            .map { (number: $0.offset + 1, text: $0.element.trimmingCharacters(in: " \t\r")) }
            .filter { !$0.text.isEmpty && !$0.text.hasPrefix("#") }
        guard !lines.isEmpty else { throw ParseError(description: "\(source) holds no secret") }
        if lines.count == 1, !lines[0].text.contains(where: { $0 == " " || $0 == "\t" }) {
            let secret = Array(lines[0].text.utf8)
            if let refusal = SecretLength.refusal(secret, in: source) { throw ParseError(description: refusal) }
            return SecretBook(shared: secret)
        }
        var book = SecretBook(shared: nil)
        for line in lines {
            let parts = line.text.split(maxSplits: 1, whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2 else {
                throw ParseError(description: "\(source) line \(line.number): expected 'NAME SECRET'")
            }
            let name = String(parts[0])
            guard MediatorName.isValid(name) else {
                // Not echoed: a one-line secret with a space lands here, and secrets are never shown.
                throw ParseError(
                    description:
                        "\(source) line \(line.number): the first word is not a valid mediator name (letters, digits, '-', '_', '.')")
            }
            let secret = Array(parts[1].trimmingCharacters(in: " \t").utf8)
            if let refusal = SecretLength.refusal(secret, what: "the secret for '\(name)'", in: "\(source) line \(line.number)") {
                throw ParseError(description: refusal)
            }
            book.perMediator[name] = secret
        }
        return book
    }

    /// Said at startup when one secret serves every name: whoever holds it can connect as any
    /// mediator, so one mediator's host can impersonate another (docs/security.md).
    public var sharedSecretWarning: String? {
        guard shared != nil else { return nil }
        return
            "the secret file holds one secret shared by every mediator name: any mediator can connect under another's name (a live one keeps it, a disconnected one can be taken). Give each mediator its own secret ('NAME SECRET' lines) or use mutual TLS (--mediator-ca)."
    }

    /// Said when a forward or SOCKS5 listener names a mediator this book has no secret for: with
    /// `NAME SECRET` lines, that mediator is refused as unknown, so the forward waits forever. A typo in
    /// a name ("acme" against "acm") started silently and only showed as a forward stuck "waiting".
    public func unknownMediatorWarning(_ mediator: String, in what: String) -> String? {
        guard secret(for: mediator) == nil else { return nil }
        return
            "\(what) names mediator '\(mediator)', which has no secret in the secret file (it has secrets for \(perMediator.keys.sorted().joined(separator: ", "))): that mediator cannot connect, so it will wait until a 'NAME SECRET' line is added and the server restarted"
    }

    /// Never shows a secret, only its shape.
    public var description: String {
        var parts: [String] = []
        if shared != nil { parts.append("shared secret ****") }
        if !perMediator.isEmpty { parts.append("per-mediator secrets for \(perMediator.keys.sorted().joined(separator: ", "))") }
        return parts.joined(separator: "; ")
    }
}
