import NIOCore
import NIOPosix
import PosternCapture
import PosternPcap
import PosternTunnel

#if canImport(Glibc)
    import Glibc
#endif

/// Records what one forwarded connection carried, on its public side, into the server's pcap file
/// (`--pcap`): packets made up from the bytes (handshake, data in segments, FIN, RST) between the
/// user's address and the server's, since the server never sees the user's packets themselves. It
/// passes everything on unchanged; it sits first in the connection's pipeline.
final class PcapStreamTap: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var synthesizer: PacketSynthesizer
    private let recorder: PcapRecorder
    private var finFromUser = false
    private var finToUser = false
    private var ended = false

    /// nil when the connection's addresses are not both IP of one family.
    init?(channel: Channel, recorder: PcapRecorder) {
        guard let user = channel.remoteAddress?.endpoint, let server = channel.localAddress?.endpoint,
            let synthesizer = PacketSynthesizer(client: user, server: server)
        else { return nil }
        self.synthesizer = synthesizer
        self.recorder = recorder
        record(self.synthesizer.open())
    }

    private func record(_ packets: [[UInt8]]) {
        let now = Self.now()
        for packet in packets { recorder.write(packet, time: now) }
    }

    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if !ended { record(synthesizer.data(from: .fromInitiator, Array(buffer.readableBytesView))) }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        if !ended { record(synthesizer.data(from: .fromResponder, Array(buffer.readableBytesView))) }
        context.write(data, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed, !finFromUser, !ended {
            finFromUser = true
            record([synthesizer.fin(from: .fromInitiator)])
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let io = error as? IOError, io.errnoCode == ECONNRESET, !ended {
            ended = true
            record([synthesizer.reset(from: .fromInitiator)])
        }
        context.fireErrorCaught(error)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if !ended && !finToUser {
            if mode == .output {
                finToUser = true
                record([synthesizer.fin(from: .fromResponder)])
            } else if mode == .all {
                // An abortive close (StreamRelay sets SO_LINGER {1, 0} first) sends RST, any other FIN.
                // On the channel's own loop the option is read at once, before the close below.
                let ending: (Bool) -> Void = { [self] abortive in
                    guard !ended, !finToUser else { return }
                    if abortive {
                        ended = true
                        record([synthesizer.reset(from: .fromResponder)])
                    } else {
                        finToUser = true
                        record([synthesizer.fin(from: .fromResponder)])
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

    func channelInactive(context: ChannelHandlerContext) {
        // The user's FIN after ours closes the channel at once, without `inputClosed`.
        if !ended && !finFromUser && finToUser { record([synthesizer.fin(from: .fromInitiator)]) }
        ended = true
        context.fireChannelInactive()
    }
}
