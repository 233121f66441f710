import ArgumentParser
import Foundation
import Logging
import PosternCore
import PosternTLS
import PosternTunnel

/// Where postern keeps what it makes for itself: the server's generated TLS key and certificate, the
/// mediator's known-servers file. `--state-dir`, else $POSTERN_STATE_DIR, else /var/lib/postern for
/// root, else $XDG_STATE_HOME/postern (~/.local/state/postern).
enum StateDirectory {
    static func resolve(_ option: String?) -> String {
        if let option { return option }
        let env = ProcessInfo.processInfo.environment
        if let dir = env["POSTERN_STATE_DIR"], !dir.isEmpty { return dir }
        if geteuid() == 0 { return "/var/lib/postern" }
        if let xdg = env["XDG_STATE_HOME"], !xdg.isEmpty { return xdg + "/postern" }
        return (env["HOME"] ?? ".") + "/.local/state/postern"
    }
}
