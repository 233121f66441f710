// MARK: - ICMP echo in stream mode (docs/protocol.md §11)

extension Frame {
    /// Server to mediator, only to a mediator whose ENVIRONMENT offers it (`Capabilities.echoOffered`):
    /// send one ICMP echo request from the mediator's host to `destination` and answer ECHO_REPLY
    /// (or FAILED: denied by policy, too many in flight, no ICMP socket on that host).
    public struct Echo: Hashable, Sendable {
        public static let type: UInt8 = 0x17
        /// The largest echo payload one request asks for: an unfragmented request on a 1,500-byte MTU.
        public static let maxSize: UInt16 = 1472
        /// The longest a mediator waits for an answer; a longer timeout is cut to this.
        public static let maxTimeoutMillis: UInt32 = 10_000
        public var requestID: UInt32
        /// Where to: an address, or (only to a mediator with `Capabilities.echoNames`) a name the
        /// mediator resolves in its own network, to the first address of `family`.
        public var host: Host
        /// The address families a name may resolve to; sent only with a name.
        public var family: Family
        /// IP time to live of the request (1-255); traceroute's probes use small ones.
        public var ttl: UInt8
        /// The echo sequence number the request carries (ping's `icmp_seq`).
        public var sequence: UInt16
        /// Bytes of echo payload after the 8-byte ICMP header.
        public var size: UInt16
        public var timeoutMillis: UInt32

        /// Which addresses of a name count (the byte after `timeout` when the host is a name).
        public enum Family: UInt8, Hashable, Sendable {
            /// The first address the resolver gives, of either family.
            case any = 0
            case ipv4 = 4
            case ipv6 = 6
        }

        public init(requestID: UInt32, destination: IPAddress, ttl: UInt8, sequence: UInt16, size: UInt16, timeoutMillis: UInt32) {
            self.init(requestID: requestID, host: .ip(destination), ttl: ttl, sequence: sequence, size: size, timeoutMillis: timeoutMillis)
        }

        public init(
            requestID: UInt32, host: Host, family: Family = .any, ttl: UInt8, sequence: UInt16, size: UInt16, timeoutMillis: UInt32
        ) {
            self.requestID = requestID
            self.host = host
            // A family travels only with a name: an address has its own.
            if case .name = host { self.family = family } else { self.family = .any }
            self.ttl = ttl
            self.sequence = sequence
            self.size = size
            self.timeoutMillis = timeoutMillis
        }

        /// The destination address; for a name, nil until the mediator resolves it.
        public var destination: IPAddress? {
            if case .ip(let address) = host { return address }
            return nil
        }
    }

    /// Mediator to server, the answer to ECHO: what came back, from whom, measured on the mediator.
    public struct EchoReply: Hashable, Sendable {
        public static let type: UInt8 = 0x1f

        public enum Outcome: UInt8, Hashable, Sendable, CustomStringConvertible {
            /// An echo reply from the destination.
            case reply = 0
            /// A router on the way dropped the request: its TTL ran out (ICMP time exceeded).
            case timeExceeded = 1
            /// A router or the destination's own host said it cannot be reached (destination unreachable).
            case unreachable = 2
            /// Nothing came back within the timeout.
            case noAnswer = 3

            public var description: String {
                switch self {
                case .reply: return "reply"
                case .timeExceeded: return "time exceeded"
                case .unreachable: return "unreachable"
                case .noAnswer: return "no answer"
                }
            }
        }

        public var requestID: UInt32
        public var outcome: Outcome
        /// The ICMP type and code of the answer (0/0 for an echo reply, 0/0 when none came).
        public var icmpType: UInt8
        public var icmpCode: UInt8
        /// Who answered: the destination, or the router that sent the error; the destination when none did.
        public var from: IPAddress
        /// The IP TTL of the answer as it arrived (0 when unknown or none came).
        public var ttl: UInt8
        /// Bytes of echo payload in the answer (0 for errors and no answer).
        public var size: UInt16
        /// Microseconds from sending the request to the answer, on the mediator's clock (the timeout
        /// for no answer).
        public var rttMicros: UInt32
        public init(
            requestID: UInt32, outcome: Outcome, icmpType: UInt8, icmpCode: UInt8, from: IPAddress, ttl: UInt8, size: UInt16,
            rttMicros: UInt32
        ) {
            self.requestID = requestID
            self.outcome = outcome
            self.icmpType = icmpType
            self.icmpCode = icmpCode
            self.from = from
            self.ttl = ttl
            self.size = size
            self.rttMicros = rttMicros
        }
    }
}
