/// Which of the server's event loops reads a session's UDP channel datagrams (`--threads`): the one
/// its session id names. The service port's UDP sockets form a reuseport group whose program takes
/// the low 32 bits of the session id from each datagram's header (docs/protocol.md §9.2, offset 8),
/// less one, modulo the number of loops, and hands the datagram to that loop's socket; so the server
/// gives each session an id that names the loop its session runs on, and no datagram hops between
/// loops. Less one: sessions dealt round robin from loop 0 keep the ids 1, 2, 3… they had with one
/// loop. Pure arithmetic (32-bit, wrapping, as BPF's); the program does the same in the kernel.
public enum SessionLoops {
    /// The loop whose socket the kernel hands datagrams of session `id` to.
    public static func loop(ofSession id: UInt64, loops: Int) -> Int {
        guard loops > 1 else { return 0 }
        return Int((UInt32(truncatingIfNeeded: id) &- 1) % UInt32(loops))
    }

    /// The smallest id at or after `next` that names `loop` (`next` itself when there is one loop).
    public static func sessionID(atOrAfter next: UInt64, loop: Int, loops: Int) -> UInt64 {
        guard loops > 1, (0..<loops).contains(loop) else { return next }
        var id = next
        while Self.loop(ofSession: id, loops: loops) != loop { id &+= 1 }
        return id
    }
}
