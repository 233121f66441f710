import NIOCore
import PosternWire

/// What the I/O side of a stream port does next, as decided by `StreamPortStateMachine`. Each
/// action is performed in full, in the order given, before the machine is asked anything else.
public enum StreamPortAction: Hashable, Sendable {
    case none
    /// Send what the socket delivered: ask `nextOutbound` until it answers something other than DATA.
    case sendHeld
    /// Credit came back or the tunnel drained: `sendHeld`, then ask `readDecision` (read on if allowed).
    case resume
    /// Take the bytes' size from the session's buffer budget, then write them to the socket; report
    /// `socketWriteCompleted` when the write is done, and `bufferReserveFailed` if the budget is spent.
    case writeToSocket(ByteBuffer)
    /// Take this many bytes from the session's buffer budget for DATA kept before the socket is ready;
    /// report `bufferReserveFailed` if the budget is spent.
    case reserveBuffer(Int)
    /// Send WINDOW with this increment.
    case grant(UInt32)
    /// Send FINISHED: the socket reached end of input; the port stays half open.
    case sendFinished
    /// The peer finished: shut the socket's output once earlier writes are done (half-close).
    case shutdownOutput
    /// The socket joined: give `releaseBuffer` bytes back to the session budget (the replayed DATA
    /// takes its share again as it is written), then pass each frame to `tunnelReceived` in order.
    case replay([Frame], releaseBuffer: Int)
    /// A socket joined a port that had already ended: close it this way.
    case closeSocket(SocketClose)
    /// The port is over: send `lastFrame`, give `releaseBuffer` bytes back to the session budget,
    /// release the port (unregister, tell the owner `reason`), then close the socket, if there is one.
    case end(Ending)

    public enum SocketClose: Hashable, Sendable {
        /// RST: SO_LINGER {1, 0}, unsent data dropped.
        case abort
        /// FIN, once every earlier write is done.
        case afterWrites
        /// FIN now (CLOSE from the server).
        case now
    }

    public enum LastFrame: Hashable, Sendable {
        case none
        case finished
        case reset(ErrorCode)
    }

    public struct Ending: Hashable, Sendable {
        public var lastFrame: LastFrame
        public var socket: SocketClose
        public var reason: StreamPortEnd
        /// Bytes of DATA kept before the socket joined, still counted in the session budget.
        public var releaseBuffer: Int

        public init(lastFrame: LastFrame, socket: SocketClose, reason: StreamPortEnd, releaseBuffer: Int = 0) {
            self.lastFrame = lastFrame
            self.socket = socket
            self.reason = reason
            self.releaseBuffer = releaseBuffer
        }
    }
}
