import NIOCore

extension TimeAmount {
    /// Whole seconds, for messages.
    public var seconds: Int64 { nanoseconds / 1_000_000_000 }
}
