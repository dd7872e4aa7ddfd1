package config

import (
	"fmt"
	"runtime/debug"
)

// buildRevision is set by `make build` (-ldflags -X) for checkouts where
// the go command stamps no VCS information: a git worktree, whose .git is a
// file, is one.
var buildRevision string

// Version describes the running binary: module version and, when the
// build stamped them (go build -buildvcs=true, the default in a git
// checkout), the VCS revision, its time and whether the tree was modified.
func Version(program string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return program + " (no build information)"
	}
	s := fmt.Sprintf("%s %s %s", program, bi.Main.Path, bi.Main.Version)
	set := map[string]string{}
	for _, kv := range bi.Settings {
		set[kv.Key] = kv.Value
	}
	if r := set["vcs.revision"]; r != "" {
		s += " revision " + r
		if t := set["vcs.time"]; t != "" {
			s += " time " + t
		}
		if m := set["vcs.modified"]; m != "" {
			s += " modified " + m
		}
	} else if buildRevision != "" {
		s += " revision " + buildRevision + " (from make build)"
	} else {
		s += " (no VCS information: build with -buildvcs=true in a git checkout)"
	}
	return s + " " + bi.GoVersion
}
