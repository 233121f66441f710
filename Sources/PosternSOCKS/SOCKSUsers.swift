/// The RFC 1929 accounts of the SOCKS5 listeners, read from the file `--socks-users` names. One
/// account a line, blank lines and `#` comments ignored:
///
///     USER PASSWORD [MEDIATORS]
///
/// MEDIATORS is a comma-separated list of the mediators USER may choose, or `*` for any; without
/// it USER reaches the listener's own mediator only. A client chooses another mediator by sending
/// `USER@NAME` as its username. Names and passwords are 1-255 bytes without white space; a user
/// name holds no `@`.
public struct SOCKSUsers: Hashable, Sendable {
    public struct Account: Hashable, Sendable {
        public var password: [UInt8]
        /// Nil: only the listener's mediator. Empty set with `any`: every mediator.
        public var mediators: Set<String>?
        public var anyMediator: Bool
    }

    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        public var description: String
    }

    public private(set) var accounts: [String: Account] = [:]

    public init(parsing text: String, source: String) throws(ParseError) {
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard let first = line.first, !first.hasPrefix("#") else { continue }
            let at = "\(source) line \(i + 1)"
            guard line.count == 2 || line.count == 3 else {
                throw ParseError(description: "\(at): expected 'USER PASSWORD [MEDIATORS]'")
            }
            let user = String(line[0])
            let password = Array(line[1].utf8)
            guard (1...255).contains(user.utf8.count), !user.contains("@") else {
                throw ParseError(description: "\(at): a user name is 1-255 bytes without '@'")
            }
            guard (1...255).contains(password.count) else {
                throw ParseError(description: "\(at): a password is 1-255 bytes")
            }
            guard accounts[user] == nil else { throw ParseError(description: "\(at): user '\(user)' appears twice") }
            var account = Account(password: password, mediators: nil, anyMediator: false)
            if line.count == 3 {
                if line[2] == "*" {
                    account.anyMediator = true
                } else {
                    let names = line[2].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                    guard !names.contains(where: \.isEmpty) else { throw ParseError(description: "\(at): an empty mediator name") }
                    account.mediators = Set(names)
                }
            }
            accounts[user] = account
        }
        guard !accounts.isEmpty else { throw ParseError(description: "\(source) holds no account") }
    }

    /// Whether some account may choose another mediator than `listenerMediator` (`USER@NAME`): a
    /// listener with such accounts learns its connections' mediator only after their handshake.
    public func mayChoose(otherThan listenerMediator: String) -> Bool {
        accounts.values.contains { $0.anyMediator || ($0.mediators ?? []).contains { $0 != listenerMediator } }
    }

    /// The mediator the client may use, or nil when the name, the password or the choice of
    /// mediator is refused (the client is told only that authentication failed). The password is
    /// compared in time independent of where it differs.
    public func mediator(username: [UInt8], password: [UInt8], listenerMediator: String) -> String? {
        guard let text = String(validating: username, as: UTF8.self) else { return nil }
        var user = text
        var chosen = listenerMediator
        if let at = text.lastIndex(of: "@") {
            user = String(text[..<at])
            chosen = String(text[text.index(after: at)...])
        }
        // Compare against something of the same cost for an unknown user too.
        let account = accounts[user]
        let matches = Self.equal(password, account?.password ?? Array(repeating: 0, count: 32))
        guard let account, matches else { return nil }
        if chosen == listenerMediator || account.anyMediator || account.mediators?.contains(chosen) == true { return chosen }
        return nil
    }

    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return diff == 0
    }
}
