import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// A one-instruction classic BPF program, "return k", attached to a socket: the UDP channel's socket
/// takes `k` = the whole datagram (`DatagramChecksumFilter`), a steered listener's reuseport group
/// takes `k` = the index of the socket that gets each new connection (`SteeredListener`).
public enum ReturnProgram {
    /// struct sock_filter (linux/filter.h).
    struct Instruction {
        var code: UInt16
        var jt: UInt8
        var jf: UInt8
        var k: UInt32
    }

    /// struct sock_fprog: the length, then (after padding) the pointer, as in C.
    struct Program {
        var length: UInt16
        var instructions: UnsafeMutablePointer<Instruction>
    }

    /// SO_ATTACH_FILTER and SO_ATTACH_REUSEPORT_CBPF (asm-generic/socket.h), which Glibc does not
    /// export to Swift.
    public static let attachFilter: CInt = 26
    public static let attachReuseportCBPF: CInt = 51

    /// "return k" for every k a caller may ask for (the whole datagram, and up to 64 loops), allocated
    /// once and never freed: the kernel copies a program at each setsockopt, which may run later, on
    /// the socket's event loop.
    nonisolated(unsafe) private static let programs: [UInt32: UnsafeMutablePointer<Instruction>] = {
        var all: [UInt32: UnsafeMutablePointer<Instruction>] = [:]
        for k in Array(0..<64) + [UInt32.max] {
            let p = UnsafeMutablePointer<Instruction>.allocate(capacity: 1)
            p.initialize(to: Instruction(code: 0x06, jt: 0, jf: 0, k: k))  // BPF_RET | BPF_K
            all[k] = p
        }
        return all
    }()

    /// Attaches "return k" to `channel`'s socket as `option` (SOL_SOCKET); a channel that is not a
    /// socket is left as it is. `k` is below 64 or `UInt32.max`.
    public static func attach(returning k: UInt32, as option: CInt, to channel: Channel) -> EventLoopFuture<Void> {
        guard let provider = channel as? SocketOptionProvider, let instructions = programs[k] else {
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        precondition(MemoryLayout<Instruction>.size == 8 && MemoryLayout<Program>.size == 16, "sock_filter/sock_fprog layout")
        return provider.unsafeSetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(option),
            value: Program(length: 1, instructions: instructions))
    }
}
