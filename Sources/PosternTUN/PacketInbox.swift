import NIOCore
import PosternPacket

/// Where a device's packets go once read, on its event loop: to the receiver when one is set (the
/// relay's direct path), else into a bounded queue that `read()` takes batches from — one reader at a
/// time. What `TunDevice` and `LANPresenceDevice` share; neither is thread-safe, both only touch it
/// on their event loop.
final class PacketInbox {
    private let capacity: Int
    private let batchSize: Int
    private var receiver: (([ByteBuffer]) -> Void)?
    private var queue = CircularBuffer<ByteBuffer>()
    private var reader: CheckedContinuation<[ByteBuffer], Error>?
    private var isClosed = false

    init(capacity: Int, batchSize: Int) {
        self.capacity = capacity
        self.batchSize = batchSize
    }

    /// Hands every batch from now on to `receive` instead of queueing it, starting with what waits.
    func setReceiver(_ receive: @escaping ([ByteBuffer]) -> Void) {
        receiver = receive
        if !queue.isEmpty {
            let queued = Array(queue)
            queue.removeAll()
            receive(queued)
        }
    }

    /// Passes `packets` on; returns how many did not fit the queue and were dropped.
    func deliver(_ packets: [ByteBuffer]) -> Int {
        if let receiver {
            receiver(packets)
            return 0
        }
        let room = max(0, capacity - queue.count)
        queue.append(contentsOf: packets.prefix(room))
        if let reader, !queue.isEmpty {
            self.reader = nil
            reader.resume(returning: takeBatch())
        }
        return max(0, packets.count - room)
    }

    /// `PacketDevice.read()`'s answer: a waiting batch at once, else the next one to arrive.
    func read(_ continuation: CheckedContinuation<[ByteBuffer], Error>) {
        if isClosed {
            continuation.resume(throwing: PacketDeviceError.closed)
        } else if !queue.isEmpty {
            continuation.resume(returning: takeBatch())
        } else if reader != nil {
            continuation.resume(throwing: PacketDeviceError.concurrentRead)
        } else {
            reader = continuation
        }
    }

    /// Ends the reader's wait with `closed` and forgets the queue; returns how many packets it held.
    func close() -> Int {
        isClosed = true
        reader?.resume(throwing: PacketDeviceError.closed)
        reader = nil
        let held = queue.count
        queue.removeAll()
        return held
    }

    private func takeBatch() -> [ByteBuffer] {
        var batch: [ByteBuffer] = []
        while batch.count < batchSize, let p = queue.popFirst() { batch.append(p) }
        return batch
    }
}
