import NIOCore
import NIOPosix
import PosternCapture
import PosternPcap
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// Records what one relayed TCP connection carried into a pcap file (`--pcap` on the server and the
/// mediator): packets made up from the bytes (handshake, data in segments, FIN, RST) between the two
/// socket addresses, since a socket never sees the packets themselves. It passes everything on
/// unchanged; it sits first in the connection's pipeline.
public final class PcapStreamTap: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var synthesizer: PacketSynthesizer
    private let recorder: PcapRecorder
    private var finFromUser = false
    private var finToUser = false
    private var ended = false
    private let initiatedHere: Bool
    /// The synthesizer's side for bytes that arrive (the remote's) and for bytes written here.
    private var inbound: FlowDirection { initiatedHere ? .fromResponder : .fromInitiator }
    private var outbound: FlowDirection { inbound.reversed }

    /// nil when the connection's addresses are not both IP of one family. `initiatedHere`: this side
    /// connected (the mediator's connects), else the peer did (an accepted connection).
    public init?(channel: Channel, recorder: PcapRecorder, initiatedHere: Bool = false) {
        guard let remote = channel.remoteAddress.flatMap(Self.endpoint), let local = channel.localAddress.flatMap(Self.endpoint),
            let synthesizer = PacketSynthesizer(client: initiatedHere ? local : remote, server: initiatedHere ? remote : local)
        else { return nil }
        self.initiatedHere = initiatedHere
        self.synthesizer = synthesizer
        self.recorder = recorder
        record(self.synthesizer.open())
    }

    private func record(_ packets: [[UInt8]]) {
        let now = Self.now()
        for packet in packets { recorder.write(packet, time: now) }
    }

    /// An IP socket address as an `Endpoint` (nil for Unix sockets).
    static func endpoint(_ address: SocketAddress) -> Endpoint? {
        guard let ip = address.ipAddress, let parsed = IPAddress(ip), let port = address.port else { return nil }
        return Endpoint(parsed, UInt16(port))
    }

    /// The wall clock in nanoseconds since the epoch, as pcap timestamps want it.
    public static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if !ended { record(synthesizer.data(from: inbound, Array(buffer.readableBytesView))) }
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        if !ended { record(synthesizer.data(from: outbound, Array(buffer.readableBytesView))) }
        context.write(data, promise: promise)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed, !finFromUser, !ended {
            finFromUser = true
            record([synthesizer.fin(from: inbound)])
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let io = error as? IOError, io.errnoCode == ECONNRESET, !ended {
            ended = true
            record([synthesizer.reset(from: inbound)])
        }
        context.fireErrorCaught(error)
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if !ended && !finToUser {
            if mode == .output {
                finToUser = true
                record([synthesizer.fin(from: outbound)])
            } else if mode == .all {
                // An abortive close (StreamRelay sets SO_LINGER {1, 0} first) sends RST, any other FIN.
                // On the channel's own loop the option is read at once, before the close below.
                let ending: (Bool) -> Void = { [self] abortive in
                    guard !ended, !finToUser else { return }
                    if abortive {
                        ended = true
                        record([synthesizer.reset(from: outbound)])
                    } else {
                        finToUser = true
                        record([synthesizer.fin(from: outbound)])
                    }
                }
                if let provider = context.channel as? SocketOptionProvider {
                    provider.getSoLinger().whenComplete { result in
                        switch result {
                        case .success(let l): ending(l.l_onoff == 1 && l.l_linger == 0)
                        case .failure: ending(false)
                        }
                    }
                } else {
                    ending(false)
                }
            }
        }
        context.close(mode: mode, promise: promise)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        // The user's FIN after ours closes the channel at once, without `inputClosed`.
        if !ended && !finFromUser && finToUser { record([synthesizer.fin(from: inbound)]) }
        ended = true
        context.fireChannelInactive()
    }
}
