/// Which of the server's features keep every mediator session on the control loop (`--threads`).
///
/// A session, its link and its stream relays live on one event loop, and every forward runs its
/// users' connections and flows on that loop: `tcp:` and `udp:` forwards to a mediator are steered
/// there (one socket per loop, a reuseport program), forwards that listen on the mediator make their
/// sockets there; SOCKS5 listeners are steered like `tcp:` forwards unless their accounts may choose
/// another mediator. The features below still touch a session from the control loop, per datagram or
/// packet or from state the control loop owns (docs/architecture.md, "Threads"): while one of them is
/// configured, new sessions go to the control loop, as with `--threads 1`.
public enum LoopPinning {
    /// Why `spec` needs its mediator's session on the control loop, nil when it does not: no forward
    /// does any more (each runs on its session's loop).
    /// `--pcap` and `ctl capture` of a forward still pin (`reasons`, `ServerService.pin`): the
    /// recorder is the control loop's.
    public static func reason(for spec: ForwardSpec) -> String? { nil }

    /// Every reason a server configured so keeps its sessions on the control loop (empty: it spreads).
    /// `socksListeners`: the SOCKS5 listeners whose clients may choose their mediator (`USER@NAME`).
    public static func reasons(forwards: [ForwardSpec], socksListeners: Int, tun: Bool, pcap: Bool) -> [String] {
        var why = forwards.compactMap(reason(for:))
        if socksListeners > 0 { why.append("SOCKS5 listeners whose accounts may choose another mediator") }
        if tun { why.append("TUN mode (--tun)") }
        if pcap { why.append("--pcap") }
        return why
    }

    /// Whether new sessions go to any loop: more than one, and nothing configured that pins them.
    public static func spreads(threads: Int, reasons: [String]) -> Bool {
        threads > 1 && reasons.isEmpty
    }

    /// The index of the loop a forward's accepting socket should be for a mediator whose session
    /// runs on `sessionLoop` (nil: none connected): that loop, or the control loop (0).
    public static func acceptingLoop(sessionLoop: Int?, loops: Int) -> Int {
        guard let l = sessionLoop, (0..<loops).contains(l) else { return 0 }
        return l
    }
}
