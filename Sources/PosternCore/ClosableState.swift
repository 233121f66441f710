/// A session machine's state that `SessionCommon` can move to closed.
protocol ClosableState {
    mutating func markClosed()
}
