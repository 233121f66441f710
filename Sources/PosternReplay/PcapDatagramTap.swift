import NIOCore
import PosternCapture
import PosternPcap
import PosternWire

/// Records the datagrams of a UDP socket (`--pcap`: a udp: forward's, a mediator's datagram port),
/// each as one UDP packet between the peer and the socket's address (as bound: 0.0.0.0 for a
/// wildcard). Passes everything on unchanged.
public final class PcapDatagramTap: ChannelDuplexHandler {
    public typealias InboundIn = AddressedEnvelope<ByteBuffer>
    public typealias InboundOut = AddressedEnvelope<ByteBuffer>
    public typealias OutboundIn = AddressedEnvelope<ByteBuffer>
    public typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let recorder: PcapRecorder
    private var local: Endpoint?

    public init(recorder: PcapRecorder) {
        self.recorder = recorder
    }

    public func channelActive(context: ChannelHandlerContext) {
        local = context.channel.localAddress.flatMap(PcapStreamTap.endpoint)
        context.fireChannelActive()
    }

    private func record(_ peer: SocketAddress, _ bytes: ByteBuffer, from direction: FlowDirection, _ context: ChannelHandlerContext) {
        if local == nil { local = context.channel.localAddress.flatMap(PcapStreamTap.endpoint) }
        guard let local, let remote = PcapStreamTap.endpoint(peer), let synthesizer = PacketSynthesizer(client: remote, server: local)
        else { return }
        recorder.write(synthesizer.datagram(from: direction, Array(bytes.readableBytesView)), time: PcapStreamTap.now())
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        record(envelope.remoteAddress, envelope.data, from: .fromInitiator, context)
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let envelope = unwrapOutboundIn(data)
        record(envelope.remoteAddress, envelope.data, from: .fromResponder, context)
        context.write(data, promise: promise)
    }
}
