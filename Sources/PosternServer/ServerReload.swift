import NIOCore
import PosternCore

/// What a reload did, as `POST /v1/reload` answers it.
public struct ReloadResult: Codable, Sendable {
    public var unchanged: [String]
    public var added: [String]
    public var removed: [String]
}

/// A reload that was refused: the configuration is broken, or a new forward could not start. The
/// forwards that ran before run on, unchanged.
public struct ReloadError: Error, CustomStringConvertible {
    public var description: String
}

extension ServerService {
    /// Reads the configuration again (`wantedForwards`) and applies its forwards: those that did not
    /// change keep running with their connections (`ForwardDiff`), removed ones stop, new ones
    /// start. All or nothing: a configuration that does not parse, or a new forward that cannot
    /// bind, leaves the running forwards as they were (removed ones are started again). Forwards
    /// added through the API (`add`) are not the configuration's: a reload leaves them alone.
    public func reload() -> EventLoopFuture<ReloadResult> {
        queued { [self] in
            guard let wantedForwards else { throw ReloadError(description: "this server has no configuration to reload") }
            let wanted = try wantedForwards()
            let runtime = forwards.map(\.spec).filter { runtimeForwards.contains($0.text) }
            // The configuration must not collide with what the API added either.
            _ = try ForwardDiff(running: [], wanted: wanted + runtime)
            let configured = forwards.map(\.spec).filter { !runtimeForwards.contains($0.text) }
            return try ForwardDiff(running: configured, wanted: wanted)
        }
    }

    /// `ctl forwards add`: one more forward, until removed or the server restarts (a reload keeps it).
    public func addForward(_ spec: ForwardSpec) -> EventLoopFuture<ReloadResult> {
        queued { [self] in
            let running = forwards.map(\.spec)
            let diff = try ForwardDiff(running: running, wanted: running + [spec])
            guard !diff.added.isEmpty else { throw ReloadError(description: "forward '\(spec)' is running already") }
            return diff
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
            return diff
        } then: { [self] result in
            runtimeForwards.subtract(result.removed)
        }
    }

    /// Runs one change after the one before it: a change whose binds are still under way has not
    /// settled `forwards` yet (a burst of SIGHUPs runs one at a time).
    private func queued(_ plan: @escaping () throws -> ForwardDiff, then done: @escaping (ReloadResult) -> Void = { _ in })
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

    private func apply(_ plan: () throws -> ForwardDiff) -> EventLoopFuture<ReloadResult> {
        let diff: ForwardDiff
        var made: [any Forward] = []
        do {
            diff = try plan()
            // Everything that can fail without a socket fails here, before anything stops.
            for spec in diff.added { made.append(try makeForward(spec)) }
        } catch {
            logger.error("forwards unchanged, change refused: \(error)")
            return eventLoop.makeFailedFuture(ReloadError(description: "\(error)"))
        }
        let result = ReloadResult(
            unchanged: diff.unchanged.map(\.text), added: diff.added.map(\.text), removed: diff.removed.map(\.text))
        if diff.isEmpty { return eventLoop.makeSucceededFuture(result) }
        let removedIDs = Set(diff.removed.map(\.text))
        let stopping = forwards.filter { removedIDs.contains($0.spec.text) }
        for f in stopping {
            f.stop()
            captures.forwardStopped(f)
        }
        forwards.removeAll { f in stopping.contains { $0 === f } }
        let starts = made.map { f in
            f.start().flatMapErrorThrowing { throw Self.bindError(f.spec.listen, "forward \(f.spec)", $0) }
        }
        return EventLoopFuture.whenAllComplete(starts, on: eventLoop).flatMapThrowing { [self] results in
            let failures = results.compactMap { r -> Error? in
                if case .failure(let e) = r { return e }
                return nil
            }
            guard failures.isEmpty else {
                // Undo: the new ones go, the removed ones come back (as new objects on the same specs).
                for f in made { f.stop() }
                for spec in diff.removed { startAgain(spec) }
                let message = failures.map { "\($0)" }.joined(separator: "; ")
                logger.error("forwards unchanged, change refused: \(message)")
                throw ReloadError(description: message)
            }
            for f in made {
                forwards.append(f)
                if let link = registry.link(f.spec.mediator) { attach(f, to: link) }
            }
            logger.info("forwards: \(diff.added.count) added, \(diff.removed.count) removed, \(diff.unchanged.count) unchanged")
            for spec in diff.removed {
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "forward-removed", detail: spec.text))
            }
            for spec in diff.added { registry.events.post(ServerEvent(mediator: spec.mediator, kind: "forward-added", detail: spec.text)) }
            return result
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
