import Foundation
import PackagePlugin

/// Records the git commit the build is made from, for `postern --version`. A prebuild command
/// (a shell, not a built tool, so it costs no compile) asks git in the package directory and
/// writes `BuildCommit.swift`; outside a git checkout, or without git, the commit is nil and the
/// version says "unknown commit" rather than guess. The file is replaced only when its text
/// changes, so an unchanged tree recompiles nothing.
@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("BuildCommit")
        let script = #"""
            dir=$1 out=$2
            mkdir -p "$out" || exit 1
            commit=
            # Only a checkout of this package counts, not one that merely contains its directory.
            top=$(git -C "$dir" rev-parse --show-toplevel 2>/dev/null) || top=
            if [ -n "$top" ] && [ "$(cd "$top" && pwd -P)" = "$(cd "$dir" && pwd -P)" ]; then
                commit=$(git -C "$dir" rev-parse --verify -q HEAD 2>/dev/null) || commit=
            fi
            modified=false
            if [ -n "$commit" ]; then
                git -C "$dir" diff --quiet HEAD -- 2>/dev/null || modified=true
                value="\"$commit\""
            else
                value=nil
            fi
            {
                echo '// Generated at build time by Plugins/BuildInfoPlugin: not in the repository.'
                echo 'enum BuildCommit {'
                echo "    static let commit: String? = $value"
                echo "    static let modified = $modified"
                echo '}'
            } >"$out/BuildCommit.swift.new" || exit 1
            if cmp -s "$out/BuildCommit.swift.new" "$out/BuildCommit.swift"; then
                rm -f "$out/BuildCommit.swift.new"
            else
                mv "$out/BuildCommit.swift.new" "$out/BuildCommit.swift"
            fi
            """#
        return [
            .prebuildCommand(
                displayName: "Recording the git commit of the build",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: ["-c", script, "sh", context.package.directoryURL.path, output.path],
                outputFilesDirectory: output)
        ]
    }
}
