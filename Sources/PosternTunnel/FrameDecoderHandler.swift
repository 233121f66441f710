import NIOCore
import PosternWire

/// Loops `FrameDecoder` over the incoming bytes; all the rules live in the decoder.
///
/// Frames are cut straight out of the buffers the transport delivers (a DATA payload is a slice of
/// it, never a copy). Only a frame split between two reads is gathered, in a buffer of its own size:
/// NIO's `ByteToMessageHandler` instead appended every read to the remainder of the last one and,
/// as the slices still in use shared that buffer, copied the remainder into a new buffer of the whole
/// cumulation's capacity on every read (measured: 84 MiB of such copies held at once by a server
/// relaying eight streams).
public final class FrameDecoderHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = Frame

    private var decoder: FrameDecoder
    /// The start of a frame the last read ended in the middle of.
    private var partial: ByteBuffer?
    /// A frame could not be decoded: the error went up once, nothing more is read.
    private var failed = false

    public init(maxPayload: UInt32) {
        decoder = FrameDecoder(maxPayload: maxPayload)
    }

    /// Bytes held for a frame split between reads (for tests).
    public var heldBytes: Int { partial?.readableBytes ?? 0 }
    /// Room of the buffer that holds them.
    public var heldCapacity: Int { partial?.capacity ?? 0 }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var input = unwrapInboundIn(data)
        do {
            if partial != nil {
                guard let frame = try completePartial(from: &input) else { return }
                context.fireChannelRead(wrapInboundOut(frame))
            }
            while let frame = try decoder.next(&input) {
                context.fireChannelRead(wrapInboundOut(frame))
            }
            if input.readableBytes > 0 { keep(input) }
        } catch {
            failed = true
            partial = nil
            context.fireErrorCaught(error)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        partial = nil
    }

    /// Moves into `partial` only the bytes its frame still lacks; returns the frame once whole.
    private func completePartial(from input: inout ByteBuffer) throws -> Frame? {
        while input.readableBytes > 0 {
            let need = missingBytes(of: partial!)
            var piece = input.readSlice(length: min(need, input.readableBytes))!
            partial!.writeBuffer(&piece)
            if let frame = try decoder.next(&partial!) {
                partial = nil
                return frame
            }
        }
        return nil
    }

    /// Bytes missing from the frame `buffer` starts: its header first, then its payload.
    private func missingBytes(of buffer: ByteBuffer) -> Int {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
            buffer.readableBytes >= Frame.headerLength
        else { return Frame.headerLength - buffer.readableBytes }
        return Frame.headerLength + Int(length) - buffer.readableBytes
    }

    /// Copies the start of a split frame into a buffer sized for the whole frame, so the rest is
    /// appended without growing it, and the transport's buffer is not held for it.
    private func keep(_ input: ByteBuffer) {
        var whole = Frame.headerLength
        if input.readableBytes >= Frame.headerLength, let length = input.getInteger(at: input.readerIndex, as: UInt32.self) {
            // The decoder already checked the header (length within the limit) before returning nil.
            whole += Int(length)
        }
        var buffer = ByteBufferAllocator().buffer(capacity: max(whole, input.readableBytes))
        var rest = input
        buffer.writeBuffer(&rest)
        partial = buffer
    }
}
