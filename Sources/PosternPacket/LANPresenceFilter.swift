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

    public static let loadByte: UInt16 = 0x30  // BPF_LD | BPF_B | BPF_ABS

    public let instructions: [Instruction]

    /// Frames for any of `addresses` (one IPv4 and one IPv6 at most are meaningful): for IPv4 as
    /// `init(address:)`; for IPv6, packets to the address (ethertype 0x86dd, destination at offset
    /// 38) and neighbour solicitations for it (next header 58 directly after the fixed header, type
    /// 135, target at offset 62). A solicitation behind extension headers is not recognised, which
    /// costs nothing: NDP never uses them. The advertisements answering the presence's own
    /// solicitations are addressed to it, so the first test passes them. nil when `addresses` is empty.
    public init?(addresses: [IPAddress]) {
        let v4 = addresses.compactMap { a -> UInt32? in if case .v4(let v) = a { return v } else { return nil } }.first
        let v6 = addresses.first { $0.isIPv6 }
        guard v4 != nil || v6 != nil else { return nil }
        // Assembled with named jump targets, resolved below to the relative offsets BPF wants.
        enum Target: Hashable { case next, accept, drop, arp, ipv4, ipv6, solicitation }
        var program: [(Instruction, Target, Target, Target?)] = []  // instruction, if true, if false, label
        func add(_ code: UInt16, _ k: UInt32, _ t: Target = .next, _ f: Target = .next, label: Target? = nil) {
            program.append((Instruction(code: code, k: k), t, f, label))
        }
        func words(_ bytes: [UInt8]) -> [UInt32] {
            stride(from: 0, to: 16, by: 4).map { (i: Int) -> UInt32 in
                var word: UInt32 = 0
                for b in bytes[i..<(i + 4)] { word = word << 8 | UInt32(b) }
                return word
            }
        }
        add(Self.loadWord, Self.packetTypeOffset)
        add(Self.jumpIfEqual, Self.outgoing, .drop, .next)
        add(Self.loadHalf, 12)
        if v4 != nil {
            add(Self.jumpIfEqual, 0x0806, .arp, .next)
            add(Self.jumpIfEqual, 0x0800, .ipv4, v6 == nil ? .drop : .next)
        }
        if v6 != nil { add(Self.jumpIfEqual, 0x86dd, .ipv6, .drop) }
        if let v4 {
            add(Self.loadWord, 38, label: .arp)
            add(Self.jumpIfEqual, v4, .accept, .drop)
            add(Self.loadWord, 30, label: .ipv4)
            add(Self.jumpIfEqual, v4, .accept, .drop)
        }
        if let v6 {
            let w = words(v6.bytes)
            for i in 0..<4 {
                add(Self.loadWord, 38 + UInt32(i) * 4, label: i == 0 ? .ipv6 : nil)
                add(Self.jumpIfEqual, w[i], i == 3 ? .accept : .next, .solicitation)
            }
            add(Self.loadByte, 20, label: .solicitation)
            add(Self.jumpIfEqual, 58, .next, .drop)
            add(Self.loadByte, 54)
            add(Self.jumpIfEqual, 135, .next, .drop)
            for i in 0..<4 {
                add(Self.loadWord, 62 + UInt32(i) * 4)
                add(Self.jumpIfEqual, w[i], i == 3 ? .accept : .next, .drop)
            }
        }
        add(Self.returnConstant, Self.acceptLength, label: .accept)
        add(Self.returnConstant, 0, label: .drop)
        var at: [Target: Int] = [:]
        for (i, entry) in program.enumerated() { if let label = entry.3 { at[label] = i } }
        instructions = program.enumerated().map { i, entry in
            var instruction = entry.0
            if instruction.code == Self.jumpIfEqual {
                func offset(_ t: Target) -> UInt8 { t == .next ? 0 : UInt8(at[t]! - i - 1) }
                instruction.jt = offset(entry.1)
                instruction.jf = offset(entry.2)
            }
            return instruction
        }
    }

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
