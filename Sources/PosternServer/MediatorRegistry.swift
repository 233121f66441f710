import Logging
import NIOCore
import PosternCore
import PosternTunnel
import PosternWire

/// Connected mediators by name. A mediator that reconnects replaces its stale session at once: the
/// old one gets GOAWAY and its ports are freed, and forwards attach to the new one by themselves.
public final class MediatorRegistry {
    public private(set) var links: [String: MediatorLink] = [:]
    public let events: EventLog
    private var logger: Logger
    /// Forwards and others that act when a mediator comes or goes.
    private var observers: [(MediatorLink) -> Void] = []
    /// Mediators connected at once. One session per name: a reconnecting mediator replaces its own.
    var maxMediators = 1024

    init(events: EventLog, logger: Logger) {
        self.events = events
        self.logger = logger
    }

    public func link(_ name: String) -> MediatorLink? {
        guard let l = links[name], l.isOpen else { return nil }
        return l
    }

    /// Called for every mediator that attaches, now and later.
    public func whenAttached(_ f: @escaping (MediatorLink) -> Void) {
        observers.append(f)
    }

    func attach(_ link: MediatorLink) {
        let name = link.name
        if links[name] == nil, links.count >= maxMediators {
            let from = link.session.remoteAddress?.display ?? "?"
            logger.warning("mediator '\(name)' from \(from) turned away: \(links.count) mediators connected (--max-mediators)")
            events.post(ServerEvent(mediator: name, kind: "refused", detail: "server full (\(maxMediators) mediators)"))
            link.session.goAway(.limitExceeded, "server full: \(maxMediators) mediators are connected (--max-mediators)")
            return
        }
        if let old = links[name], old !== link {
            logger.info("mediator '\(name)' reconnected; dropping its previous session")
            events.post(ServerEvent(mediator: name, kind: "replaced", detail: "a newer session replaces the previous one"))
            old.session.goAway(.replaced, "replaced by a newer session of the same mediator")
        }
        links[name] = link
        let from = link.session.remoteAddress?.display ?? "?"
        logger.info("mediator '\(name)' connected from \(from) (session \(link.info?.sessionID ?? 0))")
        events.post(ServerEvent(mediator: name, kind: "connected", detail: "from \(from)"))
        for o in observers { o(link) }
    }

    func detach(_ link: MediatorLink, _ end: SessionEnd) {
        guard link.info != nil else { return }
        let name = link.name
        if links[name] === link {
            links[name] = nil
            logger.info("mediator '\(name)' disconnected: \(end)")
            events.post(ServerEvent(mediator: name, kind: "disconnected", detail: end.description))
        }
    }
}
