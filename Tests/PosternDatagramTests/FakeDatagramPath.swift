import NIOCore
import PosternTunnel
import PosternWire

/// One end of an in-memory pair of datagram paths: what one end sends, the other delivers to the
/// receiver attached for that port. Tests set its size limit, fill it (`canSend`) and close it.
final class FakeDatagramPath: DatagramPath {
    struct Sent: Equatable {
        var portID: UInt32
        var peer: Endpoint
        var bytes: ByteBuffer
    }

    weak var remote: FakeDatagramPath?
    var isOpen = true
    var canSend = true
    var maxSize: Int
    /// Every datagram this end sent, in order.
    private(set) var sent: [Sent] = []
    private var receivers: [UInt32: DatagramPathReceiver] = [:]

    init(maxSize: Int) {
        self.maxSize = maxSize
    }

    static func pair(maxSize: Int = 65_507) -> (FakeDatagramPath, FakeDatagramPath) {
        let a = FakeDatagramPath(maxSize: maxSize)
        let b = FakeDatagramPath(maxSize: maxSize)
        a.remote = b
        b.remote = a
        return (a, b)
    }

    func maxDatagramSize(for peer: Endpoint) -> Int { maxSize }

    func send(portID: UInt32, peer: Endpoint, bytes: ByteBuffer) {
        precondition(isOpen && canSend && bytes.readableBytes <= maxSize, "a relay sent past the size rule")
        sent.append(Sent(portID: portID, peer: peer, bytes: bytes))
        remote?.receivers[portID]?.datagramReceived(bytes, peer: peer, portID: portID)
    }

    func attach(portID: UInt32, _ receiver: DatagramPathReceiver) { receivers[portID] = receiver }
    func detach(portID: UInt32) { receivers[portID] = nil }
    func isAttached(_ portID: UInt32) -> Bool { receivers[portID] != nil }

    /// The session ends: every port on both ends learns it.
    func close() {
        for end in [self, remote].compactMap({ $0 }) {
            end.isOpen = false
            let all = end.receivers
            end.receivers.removeAll()
            for (id, r) in all { r.datagramPathClosed(portID: id) }
        }
    }
}

/// The far end of a port in a test: keeps what arrives.
final class DatagramRecorder: DatagramPathReceiver {
    var received: [FakeDatagramPath.Sent] = []
    var closed = false

    func datagramReceived(_ bytes: ByteBuffer, peer: Endpoint, portID: UInt32) {
        received.append(.init(portID: portID, peer: peer, bytes: bytes))
    }

    func datagramPathClosed(portID: UInt32) { closed = true }
}

/// A clock the test moves by hand.
final class TestClock {
    var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
    func advance(_ t: TimeAmount) { now = now + t }
}

func ip(_ s: String) -> IPAddress { IPAddress(s)! }

func address(_ s: String, _ port: Int) -> SocketAddress { try! SocketAddress(ipAddress: s, port: port) }

func datagram(_ n: Int, _ fill: UInt8 = 0x5a) -> ByteBuffer { ByteBuffer(bytes: [UInt8](repeating: fill, count: n)) }
