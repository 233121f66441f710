import NIOCore
import PosternSOCKS

/// What every SOCKS5 listener of the server shares (README, "SOCKS5").
public struct SOCKSSettings: Sendable {
    /// The accounts of `--socks-users`; nil: no authentication (only where the command line allowed
    /// it: loopback listeners, or `--socks-no-auth`).
    public var users: SOCKSUsers?
    /// From accept to a complete request: a client that stalls longer is closed.
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// Connections of one listener still in their handshake; more are closed at accept, so a flood
    /// of idle connections costs bounded memory and cannot hold the handshake timers forever.
    public var maxHandshakes = 256
    /// How long a BIND waits for its peer to connect before the second reply says 6 (TTL expired).
    public var bindTimeout: TimeAmount = .seconds(120)

    public init(users: SOCKSUsers? = nil) {
        self.users = users
    }
}
