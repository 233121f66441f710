/// What `postern --version` says about the build: the version and the git commit it was built
/// from (`BuildCommit`, written at build time by Plugins/BuildInfoPlugin).
public enum BuildInfo {
    /// The full commit hash, or nil when the build was not made from a git checkout.
    public static var commit: String? { BuildCommit.commit }

    /// Whether tracked files differed from that commit when it was built.
    public static var modified: Bool { BuildCommit.modified }

    /// `0.1.0 (commit 0123abc…)`, with ", modified" for a tree with changes, or
    /// `0.1.0 (unknown commit)`.
    public static func versionLine(_ version: String) -> String {
        guard let commit else { return "\(version) (unknown commit)" }
        return "\(version) (commit \(commit)\(modified ? ", modified" : ""))"
    }

    /// The version mediators and the status API report: semantic-version build metadata with the
    /// short commit (`0.1.0+0123abcd4567`, `.modified` appended for a tree with changes).
    public static func softwareVersion(_ version: String) -> String {
        guard let commit else { return version }
        return "\(version)+\(commit.prefix(12))\(modified ? ".modified" : "")"
    }
}
