import NIOCore

/// When a replayed send may go: as fast as the peer's answers allow, or at the capture's own times
/// (optionally scaled), counted from the replay's start. Sends are always also ordered by the peer's
/// answers (see `ReplayStep`); pacing only adds waiting.
public struct ReplayPacing: Sendable {
    public enum Mode: Sendable, Equatable {
        case fast
        /// The capture's timing, each interval multiplied by `scale` (2: half speed, 0.5: double).
        case recorded(scale: Double)
    }

    public var mode: Mode
    /// The capture's first packet time (ns) and the moment the replay started.
    public var captureStart: Int64
    public var replayStart: NIODeadline

    public init(mode: Mode, captureStart: Int64, replayStart: NIODeadline) {
        self.mode = mode
        self.captureStart = captureStart
        self.replayStart = replayStart
    }

    /// The earliest moment for something the capture shows at `time`; nil: now.
    public func deadline(for time: Int64) -> NIODeadline? {
        guard case .recorded(let scale) = mode else { return nil }
        let offset = Double(max(0, time - captureStart)) * scale
        let deadline = replayStart + .nanoseconds(Int64(min(offset, Double(Int64.max / 2))))
        return deadline > .now() ? deadline : nil
    }

    /// Fast mode's pause before an RST, so bytes just written reach the peer before the reset
    /// discards what is still unsent (in recorded mode the capture's own interval does this).
    public static let resetPause = TimeAmount.milliseconds(100)
}
