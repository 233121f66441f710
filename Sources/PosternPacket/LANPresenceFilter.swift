import PosternWire

/// The classic BPF program a raw LAN presence (issue 11) attaches to its `AF_PACKET` socket
/// (SO_ATTACH_FILTER), so the kernel copies to it only the frames that concern the remote side's
/// address, not the LAN's whole traffic: ARP whose target is the address, and IPv4 packets to it,
/// never frames this host sends itself (the socket would see the host's own ARP for the address
/// leave). Pure: the instructions, as `struct sock_filter` holds them.
public struct LANPresenceFilter: Hashable, Sendable {
    /// One `struct sock_filter`: opcode, jump offsets if true / false (from the next instruction), constant.
    public struct Instruction: Hashable, Sendable {
        public var code: UInt16
        public var jt: UInt8
        public var jf: UInt8
        public var k: UInt32
        public init(code: UInt16, jt: UInt8 = 0, jf: UInt8 = 0, k: UInt32) {
            self.code = code
            self.jt = jt
            self.jf = jf
            self.k = k
        }
    }

    // Opcodes of linux/filter.h used here.
    public static let loadWord: UInt16 = 0x20  // BPF_LD | BPF_W | BPF_ABS
    public static let loadHalf: UInt16 = 0x28  // BPF_LD | BPF_H | BPF_ABS
    public static let jumpIfEqual: UInt16 = 0x15  // BPF_JMP | BPF_JEQ | BPF_K
    public static let returnConstant: UInt16 = 0x06  // BPF_RET | BPF_K
    /// `loadWord` at this offset reads the frame's packet type (SKF_AD_OFF + SKF_AD_PKTTYPE), not its bytes.
    public static let packetTypeOffset: UInt32 = 0xffff_f004
    /// PACKET_OUTGOING: a frame this host sends.
    public static let outgoing: UInt32 = 4
    /// What an accepting program returns: the bytes of the frame to keep (all of a jumbo frame).
    public static let acceptLength: UInt32 = 0x40000

    public let instructions: [Instruction]

    /// Frames for `address` (IPv4): ARP asking for it, IPv4 sent to it. nil for IPv6 (NDP comes later).
    public init?(address: IPAddress) {
        guard case .v4(let a) = address else { return nil }
        instructions = [
            Instruction(code: Self.loadWord, k: Self.packetTypeOffset),  // 0: packet type
            Instruction(code: Self.jumpIfEqual, jt: 8, jf: 0, k: Self.outgoing),  // 1: sent by this host? 10 : 2
            Instruction(code: Self.loadHalf, k: 12),  // 2: ethertype
            Instruction(code: Self.jumpIfEqual, jt: 0, jf: 2, k: 0x0806),  // 3: ARP? 4 : 6
            Instruction(code: Self.loadWord, k: 38),  // 4: ARP target protocol address
            Instruction(code: Self.jumpIfEqual, jt: 3, jf: 4, k: a),  // 5: ours? 9 : 10
            Instruction(code: Self.jumpIfEqual, jt: 0, jf: 3, k: 0x0800),  // 6: IPv4? 7 : 10
            Instruction(code: Self.loadWord, k: 30),  // 7: IPv4 destination
            Instruction(code: Self.jumpIfEqual, jt: 0, jf: 1, k: a),  // 8: ours? 9 : 10
            Instruction(code: Self.returnConstant, k: Self.acceptLength),  // 9: accept
            Instruction(code: Self.returnConstant, k: 0),  // 10: drop
        ]
    }
}
