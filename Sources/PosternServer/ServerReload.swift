import NIOCore
import PosternCore
import PosternSOCKS

/// What a reload did, as `POST /v1/reload` answers it.
public struct ReloadResult: Codable, Sendable {
    public var unchanged: [String]
    public var added: [String]
    public var removed: [String]
    /// Settings the configuration changes that a reload does not apply (`settingsNeedingRestart`).
    public var restartNeeded: [String] = []
}

/// What one change does: the forwards' diff, the SOCKS5 listeners' diff, and (for a reload) the
/// SOCKS accounts and `--socks-no-auth` read again (nil: kept).
struct ReloadPlan {
    var forwards: ForwardDiff
    var socks = SOCKSDiff()
    var socksSettings: (settings: SOCKSSettings, noAuth: Bool)?
    /// Settings the configuration read changes but a reload does not apply: said, not applied.
    var restartNeeded: [String] = []
}

/// A reload that was refused: the configuration is broken, or a new forward could not start. The
/// forwards that ran before run on, unchanged.
public struct ReloadError: Error, CustomStringConvertible {
    public var description: String
}

extension ServerService {
    /// Reads the configuration again (`wantedConfiguration`, or `wantedForwards`) and applies its
    /// forwards and SOCKS5 listeners: those that did not change keep running with their connections
    /// (`ForwardDiff`, `SOCKSDiff`), removed ones stop, new ones start, and the SOCKS accounts
    /// (`--socks-users`) are replaced. All or nothing: a configuration that does not parse, or a new
    /// forward or listener that cannot bind, leaves the running ones as they were (removed ones are
    /// started again). Forwards and listeners added through the API (`add`) are not the
    /// configuration's: a reload leaves them alone.
    public func reload() -> EventLoopFuture<ReloadResult> {
        queued { [self] in
            var plan: ReloadPlan
            if let wantedConfiguration {
                let configuration = try wantedConfiguration()
                plan = ReloadPlan(forwards: try forwardDiff(wanted: configuration.forwards))
                let runtime = socksListeners.map(\.spec).filter { runtimeSOCKS.contains($0) }
                _ = try SOCKSDiff(running: [], wanted: configuration.socks + runtime)
                let configured = socksListeners.map(\.spec).filter { !runtimeSOCKS.contains($0) }
                plan.socks = try SOCKSDiff(running: configured, wanted: configuration.socks)
                plan.socksSettings = (configuration.socksSettings, configuration.socksNoAuth)
                try checkSOCKSAuthentication(
                    for: plan.socks.added + runtime, settings: configuration.socksSettings, noAuth: configuration.socksNoAuth)
                plan.restartNeeded = configuration.settingsNeedingRestart(running: self.configuration)
            } else if let wantedForwards {
                plan = ReloadPlan(forwards: try forwardDiff(wanted: try wantedForwards()))
            } else {
                throw ReloadError(description: "this server has no configuration to reload")
            }
            return plan
        }
    }

    /// The configuration's forwards against the running ones that are the configuration's.
    private func forwardDiff(wanted: [ForwardSpec]) throws -> ForwardDiff {
        let runtime = forwards.map(\.spec).filter { runtimeForwards.contains($0.text) }
        // The configuration must not collide with what the API added either.
        _ = try ForwardDiff(running: [], wanted: wanted + runtime)
        let configured = forwards.map(\.spec).filter { !runtimeForwards.contains($0.text) }
        return try ForwardDiff(running: configured, wanted: wanted)
    }

    /// A listener off loopback without accounts lets anyone who reaches it into the mediator's
    /// network: only where `--socks-no-auth` says so, whether it comes by reload or by the API.
    private func checkSOCKSAuthentication(for specs: [SOCKSListenerSpec], settings: SOCKSSettings, noAuth: Bool) throws {
        guard settings.users == nil, !noAuth else { return }
        for spec in specs where !spec.listen.address.isLoopback {
            throw ReloadError(
                description:
                    "\(spec) without --socks-users would let anyone who reaches it into mediator '\(spec.mediator)''s network (bind it to loopback, give socks-users, or socks-no-auth)"
            )
        }
    }

    /// `ctl forwards add`: one more forward, until removed or the server restarts (a reload keeps it).
    public func addForward(_ spec: ForwardSpec) -> EventLoopFuture<ReloadResult> {
        queued { [self] in
            let running = forwards.map(\.spec)
            let diff = try ForwardDiff(running: running, wanted: running + [spec])
            guard !diff.added.isEmpty else { throw ReloadError(description: "forward '\(spec)' is running already") }
            return ReloadPlan(forwards: diff)
        } then: { [self] _ in
            runtimeForwards.insert(spec.text)
        }
    }

    /// `ctl forwards remove`: stops a running forward (configured or added), spelled any way.
    public func removeForward(_ spec: ForwardSpec) -> EventLoopFuture<ReloadResult> {
        queued { [self] in
            let running = forwards.map(\.spec)
            let diff = try ForwardDiff(running: running, wanted: running.filter { !ForwardDiff.named($0, by: spec) })
            guard !diff.removed.isEmpty else { throw ReloadError(description: "no forward '\(spec)' is running") }
            return ReloadPlan(forwards: diff)
        } then: { [self] result in
            runtimeForwards.subtract(result.removed)
        }
    }

    /// `ctl forwards add socks:ADDR:PORT=NAME`: one more SOCKS5 listener with the running accounts,
    /// until removed or the server restarts (a reload keeps it).
    public func addSOCKS(_ spec: SOCKSListenerSpec) -> EventLoopFuture<ReloadResult> {
        queued { [self] in
            let running = socksListeners.map(\.spec)
            guard !running.contains(spec) else { throw ReloadError(description: "'\(spec)' is running already") }
            var plan = ReloadPlan(forwards: try ForwardDiff(running: [], wanted: []))
            plan.socks = try SOCKSDiff(running: running, wanted: running + [spec])
            try checkSOCKSAuthentication(for: [spec], settings: socksSettings, noAuth: socksNoAuth)
            return plan
        } then: { [self] _ in
            runtimeSOCKS.insert(spec)
        }
    }

    /// `ctl forwards remove socks:ADDR:PORT=NAME`: stops a SOCKS5 listener (configured or added); its
    /// open connections go on until they end.
    public func removeSOCKS(_ spec: SOCKSListenerSpec) -> EventLoopFuture<ReloadResult> {
        queued { [self] in
            let running = socksListeners.map(\.spec)
            guard running.contains(spec) else { throw ReloadError(description: "no '\(spec)' is running") }
            var plan = ReloadPlan(forwards: try ForwardDiff(running: [], wanted: []))
            plan.socks = try SOCKSDiff(running: running, wanted: running.filter { $0 != spec })
            return plan
        } then: { [self] _ in
            runtimeSOCKS.remove(spec)
        }
    }

    /// Runs one change after the one before it: a change whose binds are still under way has not
    /// settled `forwards` yet (a burst of SIGHUPs runs one at a time).
    private func queued(_ plan: @escaping () throws -> ReloadPlan, then done: @escaping (ReloadResult) -> Void = { _ in })
        -> EventLoopFuture<
            ReloadResult
        >
    {
        eventLoop.flatSubmit { [self] in
            let previous = reloadQueue ?? eventLoop.makeSucceededVoidFuture()
            let next = previous.flatMap { self.apply(plan) }.map { result in
                done(result)
                return result
            }
            reloadQueue = next.map { _ in () }.recover { _ in () }
            return next
        }
    }

    private func apply(_ makePlan: () throws -> ReloadPlan) -> EventLoopFuture<ReloadResult> {
        let plan: ReloadPlan
        var made: [any Forward] = []
        do {
            plan = try makePlan()
            // Everything that can fail without a socket fails here, before anything stops.
            for spec in plan.forwards.added { made.append(try makeForward(spec)) }
        } catch {
            logger.error("forwards unchanged, change refused: \(error)")
            return eventLoop.makeFailedFuture(ReloadError(description: "\(error)"))
        }
        let diff = plan.forwards
        let socks = plan.socks
        var result = ReloadResult(
            unchanged: diff.unchanged.map(\.text) + socks.unchanged.map(\.description),
            added: diff.added.map(\.text) + socks.added.map(\.description),
            removed: diff.removed.map(\.text) + socks.removed.map(\.description))
        result.restartNeeded = plan.restartNeeded
        if !plan.restartNeeded.isEmpty {
            // Logged whether or not the forwards changed: the file says one thing, the server does another.
            logger.warning(
                "reload: \(plan.restartNeeded.joined(separator: ", ")) changed in the configuration, but only a restart applies \(plan.restartNeeded.count == 1 ? "it; the running value stays" : "them; the running values stay")"
            )
        }
        if diff.isEmpty && socks.isEmpty {
            if let read = plan.socksSettings { useSOCKSSettings(read.settings, noAuth: read.noAuth) }
            return eventLoop.makeSucceededFuture(result)
        }
        let removedIDs = Set(diff.removed.map(\.text))
        let stopping = forwards.filter { removedIDs.contains($0.spec.text) }
        for f in stopping {
            f.stop()
            captures.forwardStopped(f)
        }
        forwards.removeAll { f in stopping.contains { $0 === f } }
        let stoppingSOCKS = socksListeners.filter { socks.removed.contains($0.spec) }
        for l in stoppingSOCKS { l.stop() }
        socksListeners.removeAll { l in stoppingSOCKS.contains { $0 === l } }
        // New listeners take the new accounts at once; the running ones get them when all is well.
        let madeSOCKS = socks.added.map { spec in
            let l = makeSOCKSListener(spec)
            if let read = plan.socksSettings { l.settings = read.settings }
            socksPinning([l])
            return l
        }
        let starts =
            made.map { f in
                f.start().flatMapErrorThrowing { throw Self.bindError(f.spec.listen, "forward \(f.spec)", $0) }
            }
            + madeSOCKS.map { l in
                l.start().flatMapErrorThrowing { throw Self.bindError(l.spec.listen, "\(l.spec)", $0) }
            }
        return EventLoopFuture.whenAllComplete(starts, on: eventLoop).flatMapThrowing { [self] results in
            let failures = results.compactMap { r -> Error? in
                if case .failure(let e) = r { return e }
                return nil
            }
            guard failures.isEmpty else {
                // Undo: the new ones go, the removed ones come back (as new objects on the same specs).
                for f in made { f.stop() }
                for l in madeSOCKS { l.stop() }
                for spec in diff.removed { startAgain(spec) }
                for spec in socks.removed { startAgain(spec) }
                let message = failures.map { "\($0)" }.joined(separator: "; ")
                logger.error("forwards unchanged, change refused: \(message)")
                throw ReloadError(description: message)
            }
            warnUnknownMediators(forwards: diff.added, socks: socks.added)
            for f in made {
                forwards.append(f)
                if let link = registry.link(f.spec.mediator) { attach(f, to: link) }
            }
            socksListeners += madeSOCKS
            if let read = plan.socksSettings { useSOCKSSettings(read.settings, noAuth: read.noAuth) }
            logger.info("forwards: \(diff.added.count) added, \(diff.removed.count) removed, \(diff.unchanged.count) unchanged")
            if !socks.isEmpty {
                logger.info(
                    "SOCKS5 listeners: \(socks.added.count) added, \(socks.removed.count) removed, \(socks.unchanged.count) unchanged")
            }
            for spec in diff.removed {
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "forward-removed", detail: spec.text))
            }
            for spec in diff.added { registry.events.post(ServerEvent(mediator: spec.mediator, kind: "forward-added", detail: spec.text)) }
            for spec in socks.removed {
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "forward-removed", detail: spec.description))
            }
            for spec in socks.added {
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "forward-added", detail: spec.description))
            }
            return result
        }
    }

    /// The accounts a reload read: every listener's next handshake checks against them.
    private func useSOCKSSettings(_ settings: SOCKSSettings, noAuth: Bool) {
        socksSettings = settings
        socksNoAuth = noAuth
        for l in socksListeners { l.settings = settings }
        socksPinning(socksListeners)
    }

    /// A SOCKS5 listener the failed reload had stopped, listening again.
    private func startAgain(_ spec: SOCKSListenerSpec) {
        let l = makeSOCKSListener(spec)
        socksListeners.append(l)
        l.start().whenFailure { [self] error in
            logger.error("\(spec) could not be restored after the refused reload: \(error)")
            l.failure = "could not be restored after a refused reload: \(error)"
        }
    }

    /// A forward the failed reload had stopped, running again.
    private func startAgain(_ spec: ForwardSpec) {
        guard let f = try? makeForward(spec) else { return }
        forwards.append(f)
        f.start().whenComplete { [self] result in
            switch result {
            case .success:
                if let link = registry.link(spec.mediator) { attach(f, to: link) }
            case .failure(let error):
                logger.error("forward \(spec) could not be restored after the refused reload: \(error)")
                f.counters.failure = "could not be restored after a refused reload: \(error)"
            }
        }
    }
}
