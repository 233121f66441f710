import NIOCore
import PosternCore
import PosternTunnel
import PosternWire

// What every front end that joins a local TCP socket to a mediator's TCP port needs: forwards
// (`TCPForwardToMediator`, `TCPForwardFromMediator`) and SOCKS5 (`SOCKSConnection`).
extension MediatorLink {
    /// A relay for the connected or accepted port `portID`, registered at once so the DATA that
    /// follows DONE or ACCEPTED is kept until a socket joins it; the port is forgotten when it ends.
    /// A forward's `counters` count the relay while it is open and its bytes when it closes; a
    /// pipelined CONNECT's relay (`.sendsBeforeDone`) only from its DONE on (`confirm`), so a connect
    /// that fails counts as a failure alone, as it does without pipelining.
    func makeRelay(
        portID: UInt32, counters: ForwardCounters? = nil, pipelining: StreamPortStateMachine.Pipelining = .none
    ) -> StreamRelay {
        let relay = StreamRelay(portID: portID, session: session, pipelining: pipelining)
        relay.onClose = { [weak self] r, _ in
            self?.forget(portID: r.portID)
            counters?.closed(r)
        }
        if pipelining == .none { counters?.opened(relay) }
        session.register(relay)
        return relay
    }

    /// DONE came for a pipelined CONNECT whose relay runs already (docs/protocol.md §5.3).
    func confirm(_ relay: StreamRelay, counters: ForwardCounters? = nil) {
        relay.connectConfirmed()
        if relay.isLive { counters?.opened(relay) }
    }

    /// Joins `child` to the port a CONNECT just connected: what `child` sent before (held by
    /// `early`, which sits last in its pipeline) is handed to the relay in order. When `child` or
    /// the session is gone by now, the port is reset instead.
    @discardableResult
    func relay(_ child: Channel, connected done: Frame.Done, early: EarlyInput, counters: ForwardCounters? = nil) -> StreamRelay? {
        guard child.isActive, isOpen else {
            session.send(.reset(.init(portID: done.portID, code: .connectionReset)))
            forget(portID: done.portID)
            return nil
        }
        let relay = makeRelay(portID: done.portID, counters: counters)
        join(child, relay, early: early)
        return relay
    }

    /// Adds `relay` behind `early` in `child`'s pipeline and lets `early` hand over.
    func join(_ child: Channel, _ relay: StreamRelay, early: EarlyInput) {
        if child.eventLoop.inEventLoop {
            // The usual case (the relay is made on the session's loop, where the socket lives):
            // added at once, without a future and its callback per connection.
            do {
                try child.pipeline.syncOperations.addHandler(relay)
                early.handOver()
            } catch {
                child.close(promise: nil)
            }
            return
        }
        child.pipeline.addHandler(relay).whenComplete { result in
            switch result {
            case .success: early.handOver()
            case .failure: child.close(promise: nil)
            }
        }
    }
}

// What front ends that relay datagrams through the mediator need: `UDPForwardToMediator` and the
// UDP ASSOCIATE of `SOCKSConnection`.
extension MediatorLink {
    /// Opens an ephemeral UDP port of one family on the mediator; its datagrams travel this
    /// session's `datagramPath`. `close` releases it (a no-op once the session is gone).
    func openUDPPort(v6: Bool, owner: String, reportDenied: Bool = false) -> EventLoopFuture<UDPForwardToMediator.OpenedPort> {
        open(.udp, address: v6 ? .anyV6 : .anyV4, port: 0, exact: false, owner: owner, reportDenied: reportDenied).map { [self] done in
            UDPForwardToMediator.OpenedPort(
                portID: done.portID, path: datagramPath,
                close: { [weak self] in
                    guard let self, self.isOpen else { return }
                    _ = self.close(portID: done.portID)
                })
        }
    }
}
