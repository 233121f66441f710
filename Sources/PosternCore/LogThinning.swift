extension BinaryInteger {
    /// 1, 10, 100…: whether the n-th repeat of an event gets a log line, so a flood (datagrams to a
    /// denied destination, refused flows, SOCKS handshakes over the limit) does not flood the log.
    public var isWorthALogLine: Bool {
        var n = self
        while n >= 10, n % 10 == 0 { n /= 10 }
        return n == 1
    }
}
