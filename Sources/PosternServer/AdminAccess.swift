import NIOHTTP1

/// Whether a request may reach the admin API's routes, decided from its head alone, before any
/// of its body is read. The order matters only for what a refused client learns: a foreign `Host`
/// (a browser page, docs/security.md) hears nothing about the token.
public struct AdminAccess: Sendable {
    public enum Refusal: Equatable, Sendable {
        case foreignHost
        case unauthorized
        case unsupportedMediaType
    }

    /// nil: no token was configured, and every request is refused (there is no credential-less mode).
    public let token: AdminToken?
    public let hosts: AdminHostRule

    public init(token: AdminToken?, hosts: AdminHostRule) {
        self.token = token
        self.hosts = hosts
    }

    /// As `check(method:headers:)`, knowing the path: the dashboard's own files (`Dashboard`) hold
    /// no data and are served on the `Host` check alone, so a browser can load the page that then
    /// asks for the token; every route with data still needs it.
    public func check(method: HTTPMethod, uri: String, headers: HTTPHeaders) -> Refusal? {
        if method == .GET, Dashboard.asset(AdminAPI.split(uri).0) != nil {
            let host = headers["Host"]
            return host.count == 1 && hosts.allows(String(host[0])) ? nil : .foreignHost
        }
        return check(method: method, headers: headers)
    }

    public func check(method: HTTPMethod, headers: HTTPHeaders) -> Refusal? {
        let host = headers["Host"]
        guard host.count == 1, hosts.allows(String(host[0])) else { return .foreignHost }
        let authorization = headers["Authorization"]
        guard let token, authorization.count == 1, let presented = AdminToken.bearer(authorization[0]),
            token.matches(presented.utf8)
        else { return .unauthorized }
        if method != .GET && method != .HEAD && !Self.isJSON(headers["Content-Type"]) { return .unsupportedMediaType }
        return nil
    }

    /// `application/json`, with or without parameters (`; charset=utf-8`). A browser may send
    /// `text/plain`, form or multipart bodies to any address without asking first (no CORS
    /// preflight); JSON it may not, so requiring it keeps pages from driving the API blind.
    static func isJSON(_ values: [String]) -> Bool {
        guard values.count == 1 else { return false }
        let type = values[0].split(separator: ";", maxSplits: 1).first ?? ""
        return type.trimmingCharacters(in: " \t").lowercased() == "application/json"
    }
}
