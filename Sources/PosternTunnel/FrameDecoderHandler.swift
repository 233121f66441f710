import NIOCore
import PosternWire

/// Loops `FrameDecoder` over the incoming bytes; all the rules live in the decoder.
public final class FrameDecoderHandler: ByteToMessageDecoder {
    public typealias InboundOut = Frame
    private var decoder: FrameDecoder

    public init(maxPayload: UInt32) {
        decoder = FrameDecoder(maxPayload: maxPayload)
    }

    public func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try decoder.next(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while let frame = try decoder.next(&buffer) {
            context.fireChannelRead(wrapInboundOut(frame))
        }
        return .needMoreData
    }
}
