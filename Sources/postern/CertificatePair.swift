import ArgumentParser

/// `--tls-cert` and `--tls-key`: both or neither.
func certificatePair(_ certificate: String?, _ key: String?) throws -> (String, String)? {
    switch (certificate, key) {
    case (let c?, let k?): return (c, k)
    case (nil, nil): return nil
    default: throw ValidationError("--tls-cert and --tls-key go together")
    }
}
