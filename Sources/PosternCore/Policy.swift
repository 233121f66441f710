import PosternWire

/// The mediator's whole policy (DESIGN.md, "Security stance"). The server cannot widen it: the
/// mediator checks every request against it.
public struct Policy: Hashable, Sendable {
    /// Empty: connect may reach any destination (the mediator's operator chose no restriction).
    public var allow: [AllowRule]
    /// LISTEN (a port of this network exposed to the server's side): off unless `--allow-listen`.
    public var listenEnabled: Bool
    /// REDIRECT (LAN datagrams to a UDP channel): off unless `--allow-redirect`.
    public var redirectEnabled: Bool

    public init(allow: [AllowRule] = [], listenEnabled: Bool = false, redirectEnabled: Bool = false) {
        self.allow = allow
        self.listenEnabled = listenEnabled
        self.redirectEnabled = redirectEnabled
    }

    public func allowsConnect(to address: IPAddress, port: UInt16) -> Bool {
        allow.isEmpty || allow.contains { $0.allows(address, port: port) }
    }
}
