/// Counts the admin API's open connections against `AdminLimits.maxConnections`. Lives on the
/// server's event loop, like everything the admin API touches.
final class AdminConnections {
    enum Admission: Equatable {
        case admitted
        /// `first`: the first refusal since there was room, so a flood is logged once.
        case refused(first: Bool)
    }

    private let limit: Int
    private(set) var open = 0
    private var refusing = false

    init(limit: Int) {
        self.limit = limit
    }

    func admit() -> Admission {
        guard open < limit else {
            defer { refusing = true }
            return .refused(first: !refusing)
        }
        open += 1
        return .admitted
    }

    func release() {
        open -= 1
        refusing = false
    }
}
