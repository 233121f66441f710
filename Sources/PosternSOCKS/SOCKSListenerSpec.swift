import PosternCore
import PosternWire

/// `--socks ADDR:PORT=NAME`: where a SOCKS5 listener listens on the server, and the mediator whose
/// network its requests reach (unless a username chooses another).
public struct SOCKSListenerSpec: Hashable, Sendable, CustomStringConvertible {
    public var listen: ListenAddress
    public var mediator: String

    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        public var description: String
    }

    public init(listen: ListenAddress, mediator: String) {
        self.listen = listen
        self.mediator = mediator
    }

    public init(parsing text: String) throws(ParseError) {
        guard let eq = text.lastIndex(of: "=") else {
            throw ParseError(description: "--socks '\(text)': expected ADDR:PORT=NAME")
        }
        let name = String(text[text.index(after: eq)...])
        guard let endpoint = Endpoint(parsing: text[..<eq]), let listen = ListenAddress(endpoint) else {
            throw ParseError(description: "--socks '\(text)': '\(text[..<eq])' is not ADDR:PORT (IPv6 in brackets)")
        }
        guard MediatorName.isValid(name) else {
            throw ParseError(description: "--socks '\(text)': '\(name)' is not a mediator name")
        }
        self.init(listen: listen, mediator: name)
    }

    public var description: String { "socks \(listen)=\(mediator)" }
}
