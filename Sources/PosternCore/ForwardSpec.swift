import PosternWire

/// One forward from the command line or config (DESIGN.md, "Front ends"). Which side of `=` carries
/// `NAME/` says where the listening happens:
///
///     tcp:0.0.0.0:8080=acme/192.168.77.10:80   server listens, mediator connects   (.toMediator)
///     tcp:acme/0.0.0.0:9000=127.0.0.1:22       mediator listens, server connects   (.fromMediator)
///     udp:… the same with datagrams.
///
/// Options follow the target as `,KEY=VALUE` items (`ForwardOptions`): `…:80,proxy=v2,rate=10M`.
public struct ForwardSpec: Hashable, Sendable, CustomStringConvertible {
    public enum Direction: Hashable, Sendable {
        /// The server listens on `listen`; the mediator reaches `target` in its network.
        case toMediator
        /// The mediator listens on `listen` in its network; the server reaches `target`.
        case fromMediator
    }

    public var transport: Frame.Transport
    public var direction: Direction
    public var mediator: String
    /// Always an IP address: a listen side naming a host is refused when parsing.
    public var listenAddress: ListenAddress
    public var target: Endpoint
    /// PROXY header, allowed sources, bandwidth limit; empty for a plain forward.
    public var options = ForwardOptions()
    /// The text it was parsed from, for messages.
    public var text: String

    public var description: String { text }

    public var listen: Endpoint { listenAddress.endpoint }

    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        public var spec: String
        public var reason: String
        public init(spec: String, reason: String) {
            self.spec = spec
            self.reason = reason
        }
        public var description: String { "invalid forward '\(spec)': \(reason)" }
    }

    public init(parsing spec: String) throws {
        func bad(_ reason: String) -> ParseError { ParseError(spec: spec, reason: reason) }
        text = spec
        let lower = spec.lowercased()
        let body: Substring
        if lower.hasPrefix("tcp:") {
            transport = .tcp
        } else if lower.hasPrefix("udp:") {
            transport = .udp
        } else {
            throw bad("must start with tcp: or udp:")
        }
        body = spec.dropFirst(4)
        guard let eq = body.firstIndex(of: "=") else { throw bad("missing '=' between listen side and target side") }
        let left = body[..<eq]
        var right = body[body.index(after: eq)...]
        // Neither side holds a comma: the first one starts the options.
        var optionItems: [Substring] = []
        if let comma = right.firstIndex(of: ",") {
            optionItems = right[right.index(after: comma)...].split(separator: ",", omittingEmptySubsequences: false)
            right = right[..<comma]
        }

        func split(_ side: Substring) -> (name: String?, rest: Substring) {
            // A name precedes the first '/' unless that '/' is inside brackets (never for endpoints).
            if let slash = side.firstIndex(of: "/"), !side[..<slash].contains("[") {
                return (String(side[..<slash]), side[side.index(after: slash)...])
            }
            return (nil, side)
        }
        let (leftName, leftRest) = split(left)
        let (rightName, rightRest) = split(right)
        switch (leftName, rightName) {
        case (nil, let name?):
            direction = .toMediator
            mediator = name
        case (let name?, nil):
            direction = .fromMediator
            mediator = name
        case (nil, nil):
            throw bad("one side must name a mediator as NAME/ADDRESS:PORT")
        case (.some, .some):
            throw bad("only one side may name a mediator")
        }
        guard MediatorName.isValid(mediator) else { throw bad("invalid mediator name '\(mediator)'") }
        guard let l = Self.listenEndpoint(leftRest) else {
            throw bad("listen side '\(leftRest)' is not [ADDRESS:]PORT (IPv6 in brackets)")
        }
        guard let address = ListenAddress(l) else { throw bad("listen side must be an IP address, not a name") }
        guard let t = Endpoint(parsing: rightRest), t.port != 0 else {
            throw bad("target '\(rightRest)' is not HOST:PORT (IPv6 in brackets)")
        }
        listenAddress = address
        target = t
        do {
            options = try ForwardOptions(parsing: optionItems)
        } catch {
            throw bad(error.description)
        }
        if !options.isEmpty, direction == .fromMediator {
            throw bad("options (proxy=, allow=, rate=) apply to forwards the server listens on")
        }
        if options.proxy != nil, transport == .udp { throw bad("proxy= applies to tcp forwards") }
    }

    /// `ADDRESS:PORT`, or a bare `PORT` meaning all IPv4 addresses.
    static func listenEndpoint(_ s: Substring) -> Endpoint? {
        if let port = UInt16(s) { return Endpoint(.anyV4, port) }
        return Endpoint(parsing: s)
    }
}
