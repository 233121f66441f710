import Foundation
import Logging
import NIOCore
import PosternCore
import PosternNetlink
import PosternPcap
import PosternWire

/// TUN mode on the server (`--tun`): asks every mediator whose ENVIRONMENT offers it for TUN mode,
/// gives each a `ServerTun`, refuses one whose LAN prefixes overlap another's, and undoes everything
/// when sessions end, when the server stops, and (from the state directory) after a crash.
/// Lives on the server's event loop.
final class ServerTunMode {
    /// `--pcap`: each mediator's device's packets are recorded here too (set by `ServerService`).
    var recorder: PcapRecorder?
    let mtu: Int
    let stateDirectory: String
    /// Whether the devices ask the kernel for offloads (`--tun-offload`).
    var offload = true
    private var logger: Logger
    private var claims = TunPrefixClaims()
    private var tuns: [ObjectIdentifier: ServerTun] = [:]
    /// Per mediator name: the stop of an ended session's device whose start was still under way. Its
    /// undo and the next session's start use the same device name and journal file, so that start
    /// waits for it (a fast reconnect would otherwise have one undo the other's device and routes).
    private var stopping: [String: EventLoopFuture<Void>] = [:]

    init(mtu: Int, stateDirectory: String, logger: Logger) {
        self.mtu = mtu
        self.stateDirectory = stateDirectory
        self.logger = logger
    }

    /// Undoes what a killed server left: every `tun-pts-*.journal` in the state directory.
    func cleanLeftovers() {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: stateDirectory)) ?? []
        for file in files where file.hasPrefix("tun-pts-") && file.hasSuffix(".journal") {
            let configurator = NetworkConfigurator(stateFile: stateDirectory + "/" + file)
            let (found, problems) = configurator.cleanLeftovers()
            if !found.isEmpty { logger.notice("undid \(found.count) TUN mode changes a previous run left (\(file))") }
            for p in problems { logger.warning("cleaning up after a previous run: \(p)") }
        }
    }

    /// A mediator's session is established: watch its ENVIRONMENT for the TUN offer.
    func attach(_ link: MediatorLink) {
        link.onEnvironment { [weak self, weak link] environment in
            guard let self, let link, environment.capabilities.contains(.tunOffered) else { return }
            self.request(link)
        }
        link.onClose { [weak self, weak link] _ in
            guard let self, let link else { return }
            self.detach(link)
        }
        // ENVIRONMENT may have arrived while the registry was still deciding about the name.
        if let environment = link.environment, environment.capabilities.contains(.tunOffered) { request(link) }
    }

    /// The TUN state of a link, for the admin API.
    func tun(of link: MediatorLink) -> ServerTun? { tuns[ObjectIdentifier(link)] }

    /// Stops every device; the future completes once every change is undone, starts under way
    /// included (the server exits only then).
    func stopAll(eventLoop: EventLoop) -> EventLoopFuture<Void> {
        var pending = Array(stopping.values)
        for tun in tuns.values {
            if let f = tun.stop() { pending.append(f) }
            claims.release(tun.mediator)
        }
        tuns.removeAll()
        return EventLoopFuture.andAllComplete(pending, on: eventLoop)
    }

    private func request(_ link: MediatorLink) {
        let key = ObjectIdentifier(link)
        guard tuns[key] == nil else { return }
        let tun = ServerTun(mediator: link.name, stateDirectory: stateDirectory, offload: offload, logger: logger)
        tun.recorder = recorder
        tuns[key] = tun
        // A mediator that knows TUN's flags gets IPv6 and TUN_STATS (docs/protocol.md §10.1).
        let flags: Frame.Tun.Flags? = link.environment?.capabilities.contains(.tunExtensions) == true ? [.ipv6, .stats, .deviceStats] : nil
        link.requestTun(mtu: UInt16(mtu), flags: flags).whenComplete { [self] result in
            switch result {
            case .failure(let error):
                tun.refused("the mediator said: \(error)")
                logger.warning("mediator '\(link.name)' did not start TUN mode: \(error)")
            case .success(let answer):
                if flags?.contains(.ipv6) != true, answer.addresses.contains(where: \.address.isIPv6) {
                    let why = "the mediator answered with an IPv6 address this server did not offer to take"
                    tun.refused(why)
                    logger.error("TUN mode of mediator '\(link.name)' refused: \(why)")
                    endMediatorTun(link, answer.requestID, why)
                    return
                }
                if let clash = claims.claim(link.name, remoteAddress: answer.address.address, prefixes: answer.prefixes) {
                    tun.refused(clash)
                    logger.error("TUN mode of mediator '\(link.name)' refused: \(clash)")
                    link.registry.events.post(ServerEvent(mediator: link.name, kind: "tun-refused", detail: clash))
                    endMediatorTun(link, answer.requestID, clash)
                    return
                }
                let previous = stopping[link.name] ?? link.session.eventLoop.makeSucceededVoidFuture()
                // A session that ended while it waited must not start: the next one may be waiting too.
                previous.flatMap { () -> EventLoopFuture<Void> in
                    guard link.isOpen else {
                        return link.session.eventLoop.makeFailedFuture(
                            ServerTun.ServerTunError("the session ended while TUN mode waited for the previous session's to be undone"))
                    }
                    return tun.start(answer, link: link)
                }.whenComplete { [self] result in
                    switch result {
                    case .success:
                        logger.info(
                            "TUN mode of mediator '\(link.name)' up: \(tun.deviceName) \(answer.addresses.map { "\($0.address)" }.joined(separator: ", ")), routes to \(answer.prefixes.map(\.description).joined(separator: ", ")), MTU \(answer.mtu), offloads \(tun.offloads)"
                        )
                        link.registry.events.post(
                            ServerEvent(mediator: link.name, kind: "tun-up", detail: "\(tun.deviceName) \(answer.address.address)"))
                    case .failure(let error):
                        // Not when a newer session of this mediator holds the claim already: this
                        // start failed because its session ended.
                        if !tuns.values.contains(where: { $0.mediator == link.name && $0 !== tun }) { claims.release(link.name) }
                        tun.refused("\(error)")
                        logger.error("TUN mode of mediator '\(link.name)' failed on the server: \(error)")
                        endMediatorTun(link, answer.requestID, "the server could not set up its end: \(error)")
                    }
                }
            }
        }
    }

    /// Tells a mediator that knows TUN_CLOSE (docs/protocol.md §10.7) to undo the TUN mode the server
    /// will not carry, instead of keeping its device until the session ends.
    private func endMediatorTun(_ link: MediatorLink, _ requestID: UInt32, _ why: String) {
        guard link.isOpen, link.environment?.capabilities.contains(.tunExtensions) == true else { return }
        link.session.send(.tunClose(.init(requestID: requestID, message: why)))
    }

    private func detach(_ link: MediatorLink) {
        guard let tun = tuns.removeValue(forKey: ObjectIdentifier(link)) else { return }
        let wasUp = tun.relay != nil
        if let undone = tun.stop() {
            let name = tun.mediator
            stopping[name] = undone
            undone.whenComplete { [self] _ in
                if stopping[name] === undone { stopping[name] = nil }
            }
        }
        if wasUp { claims.release(tun.mediator) }
    }
}
