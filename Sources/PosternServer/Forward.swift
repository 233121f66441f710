import NIOCore
import PosternCore
import PosternPcap

/// One configured forward (`ForwardSpec`). The four shapes (TCP or UDP, listening on the server or on
/// the mediator) share this life: `ServerService` starts each once, attaches it to every session of
/// its mediator as that session is established, detaches it when the session ends, and stops it.
protocol Forward: AnyObject {
    var spec: ForwardSpec { get }
    /// What it counted and whether it serves, for `/v1/status` and `/metrics`.
    var counters: ForwardCounters { get }
    /// Binds what the forward listens on at the server, failing with the reason when it cannot.
    /// Forwards that listen on the mediator bind nothing here: they open their port on `attach`.
    func start() -> EventLoopFuture<Void>
    /// A session of `spec.mediator` is established.
    func attach(_ link: MediatorLink)
    /// That session ended; its ports are gone with it.
    func detach(_ link: MediatorLink)
    func stop()
    /// `ctl capture`: from now on, what the forward carries is recorded here too (connections and
    /// flows that begin from now on; a UDP forward's own socket at once), until `stopCapture`.
    func startCapture(_ recorder: PcapRecorder)
    func stopCapture()
    /// Whether it may serve a session on any of the server's loops (`--threads`); false: only one
    /// on the control loop, where the forward itself runs (`LoopPinning`).
    var runsOnAnyLoop: Bool { get }
    /// What it listens on at the server takes new users on loop `index` from now on (`--threads`;
    /// forwards that listen on the mediator have nothing to steer).
    func steer(toLoop index: Int)
}

extension Forward {
    var runsOnAnyLoop: Bool { false }
    func attach(_ link: MediatorLink) {}
    func detach(_ link: MediatorLink) {}
    func steer(toLoop index: Int) {}
}
