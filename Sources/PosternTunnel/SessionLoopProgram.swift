import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// The service port's reuseport program for its UDP sockets, one per event loop (`--threads`): each
/// UDP channel datagram goes to the socket of loop (low 32 bits of its session id − 1) mod N, the loop
/// of its session (`SessionLoops`). Four classic BPF instructions, run by the kernel on the UDP
/// payload: load the 32-bit word at offset 8 (the session id's low half, network order:
/// docs/protocol.md §9.2), subtract one (32-bit, wrapping), take it modulo N, return it. A datagram
/// too short for the load returns 0: loop 0's socket counts it as stray.
public enum SessionLoopProgram {
    /// "ld [8]; sub #1; mod #n; ret a" for n in 1...64, allocated once and never freed (the kernel copies a
    /// program at each setsockopt, which may run later, on the socket's event loop).
    nonisolated(unsafe) private static let programs: [Int: UnsafeMutablePointer<ReturnProgram.Instruction>] = {
        var all: [Int: UnsafeMutablePointer<ReturnProgram.Instruction>] = [:]
        for n in 1...64 {
            let p = UnsafeMutablePointer<ReturnProgram.Instruction>.allocate(capacity: 4)
            p[0] = ReturnProgram.Instruction(code: 0x20, jt: 0, jf: 0, k: 8)  // BPF_LD | BPF_W | BPF_ABS
            p[1] = ReturnProgram.Instruction(code: 0x14, jt: 0, jf: 0, k: 1)  // BPF_ALU | BPF_SUB | BPF_K
            p[2] = ReturnProgram.Instruction(code: 0x94, jt: 0, jf: 0, k: UInt32(n))  // BPF_ALU | BPF_MOD | BPF_K
            p[3] = ReturnProgram.Instruction(code: 0x16, jt: 0, jf: 0, k: 0)  // BPF_RET | BPF_A
            all[n] = p
        }
        return all
    }()

    /// Attaches the program for `loops` sockets to the reuseport group of `channel`'s socket; a
    /// channel that is not a socket is left as it is. `loops` is 1...64.
    public static func attach(loops: Int, to channel: Channel) -> EventLoopFuture<Void> {
        guard let provider = channel as? SocketOptionProvider, let instructions = programs[loops] else {
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        return provider.unsafeSetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(ReturnProgram.attachReuseportCBPF),
            value: ReturnProgram.Program(length: 4, instructions: instructions))
    }
}
