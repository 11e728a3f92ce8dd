/** Where Debian's golang-*-dev packages put their sources. */
const DEBIAN_GOPATH = "/usr/share/gocode";

/**
 * The environment of a Go build with no module proxy (none is reachable
 * here): GOPATH mode, imports resolved under `gopath` (where the caller
 * copies its own packages at their import paths) and Debian's packaged
 * sources, nothing downloaded. For the Go client's test and the
 * benchmark's Go peer.
 */
export function offlineGoEnv(gopath: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? gopath,
    GOPATH: `${gopath}:${DEBIAN_GOPATH}`,
    GO111MODULE: "off",
    GOFLAGS: "",
    GOPROXY: "off",
  };
}
