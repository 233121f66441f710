import NIOCore
import PosternCapture
import PosternPcap
import PosternTunnel
import PosternWire

/// Records the datagrams of a udp: forward's socket (`--pcap`), each as one UDP packet between the
/// sender and the forward's address (as bound: 0.0.0.0 for a wildcard). Passes everything on unchanged.
final class PcapDatagramTap: ChannelDuplexHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias InboundOut = AddressedEnvelope<ByteBuffer>
    typealias OutboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let recorder: PcapRecorder
    private var local: Endpoint?

    init(recorder: PcapRecorder) {
        self.recorder = recorder
    }

    func channelActive(context: ChannelHandlerContext) {
        local = context.channel.localAddress?.endpoint
        context.fireChannelActive()
    }

    private func record(_ peer: SocketAddress, _ bytes: ByteBuffer, from direction: FlowDirection, _ context: ChannelHandlerContext) {
        if local == nil { local = context.channel.localAddress?.endpoint }
        guard let local, let remote = peer.endpoint, let synthesizer = PacketSynthesizer(client: remote, server: local) else { return }
        recorder.write(synthesizer.datagram(from: direction, Array(bytes.readableBytesView)), time: PcapStreamTap.now())
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        record(envelope.remoteAddress, envelope.data, from: .fromInitiator, context)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let envelope = unwrapOutboundIn(data)
        record(envelope.remoteAddress, envelope.data, from: .fromResponder, context)
        context.write(data, promise: promise)
    }
}
