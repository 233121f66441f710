import PosternWire

/// What the mediator does when a session ends (README, "TLS and pinning"; docs/security.md, "What can
/// stop a mediator"). The rule: nothing that arrives before the server has proved the secret can stop
/// the mediator. A TLS alert, a key other than the pinned one, a REFUSED in the handshake: anyone on
/// the path can send those without a key, so they are logged loudly and retried with backoff. Only a
/// server that proved it knows the secret (pinned or CA-verified key, and a valid proof in WELCOME)
/// is believed when it says this mediator is not wanted at all.
public enum ReconnectRule {
    public enum Decision: Hashable, Sendable {
        /// Dial again after the backoff delay. `resetBackoff`: the session worked, so the next attempt
        /// gets fast retries again. `loud`: log at error level (a refusal or a trust failure, which
        /// needs someone's attention), not as a warning (the network).
        case retry(resetBackoff: Bool, loud: Bool)
        /// A server that proved the secret refused this mediator: retrying cannot help.
        case stop
    }

    /// Refusals that mean "not this mediator" (its name, its secret, its protocol): final only from a
    /// server that proved the secret.
    public static let finalRefusals: Set<ErrorCode> = [.authenticationFailed, .unknownMediator, .versionMismatch]

    /// The server proved itself but did not admit the session: `addressInUse` ("name in use": another
    /// live session holds the name), `limitExceeded` (server full).
    public static let admissionRefusals: Set<ErrorCode> = [.addressInUse, .limitExceeded]

    /// What the network does on its own: worth a warning, not an error.
    static let networkEnds: Set<ErrorCode> = [.connectionReset, .timedOut, .keepaliveTimeout, .shuttingDown, .unreachable, .refused]

    /// `serverProved`: the session got established, so the server's WELCOME carried a valid proof over
    /// the key this end verified.
    public static func decide(_ end: SessionEnd, serverProved: Bool) -> Decision {
        let loud = !networkEnds.contains(end.code)
        guard serverProved else { return .retry(resetBackoff: false, loud: loud) }
        if end.byPeer && finalRefusals.contains(end.code) { return .stop }
        // Not admitted ("name in use", "server full"): the session never worked; wait longer each time.
        if end.byPeer && admissionRefusals.contains(end.code) { return .retry(resetBackoff: false, loud: true) }
        return .retry(resetBackoff: true, loud: loud)
    }
}
