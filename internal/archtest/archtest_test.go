package archtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/hlsvault/hlsvault"

func pkg(rel string) string { return module + "/" + rel }

func ours(p string) bool { return p == module || strings.HasPrefix(p, module+"/") }

func under(p, parent string) bool { return p == parent || strings.HasPrefix(p, parent+"/") }

// graph maps each package to its direct imports (non-test files only).
type graph map[string][]string

// rule forbids packages matched by from to import what forbid matches:
// directly, or through any chain of imports when transitive.
type rule struct {
	name       string
	from       func(p string) bool
	forbid     func(from, dep string) bool
	transitive bool
	reason     string
}

// rules are README.md's security rules. Test files are not held to them
// (tests may decrypt what they check).
var rules = []rule{
	{
		name: "only the packager encrypts",
		from: func(p string) bool {
			return ours(p) && !slices.Contains([]string{pkg("internal/packager"), pkg("internal/verify"), pkg("internal/segcrypt")}, p)
		},
		forbid: func(_, dep string) bool { return dep == pkg("internal/segcrypt") },
		reason: "one encryption path: a second one drifts (IVs, content types, verification); " +
			"verify only decrypts, to check what was published",
	},
	{
		name: "keys never reach blob storage",
		from: func(p string) bool { return p == pkg("internal/keys") },
		forbid: func(_, dep string) bool {
			return under(dep, pkg("internal/storage")) || strings.Contains(dep, "azure-sdk-for-go")
		},
		transitive: true,
		reason:     "a content key must exist only in memory, wrapped in PostgreSQL and in the gated key response",
	},
	{
		name:       "storage knows nothing of ours",
		from:       func(p string) bool { return under(p, pkg("internal/storage")) },
		forbid:     func(_, dep string) bool { return ours(dep) && !under(dep, pkg("internal/storage")) },
		transitive: true,
		reason:     "a backend that cannot name keys, playlists or the catalog cannot leak them",
	},
	{
		name: "transcode knows neither keys nor storage",
		from: func(p string) bool { return under(p, pkg("internal/transcode")) },
		forbid: func(_, dep string) bool {
			for _, f := range []string{"internal/keys", "internal/segcrypt", "internal/storage", "internal/packager"} {
				if under(dep, pkg(f)) {
					return true
				}
			}
			return false
		},
		transitive: true,
		reason:     "ffmpeg runs on untrusted input; the code that drives it must hold no key and write nothing published",
	},
	{
		name: "fixtures stay out of production packages",
		from: func(p string) bool {
			// The programs may offer a fixture as a command (gateway
			// bench-fixture); the bench tools are not on a viewer's path.
			return ours(p) && !slices.Contains([]string{pkg("cmd/gateway"), pkg("cmd/hlsbench"), pkg("internal/backfill/benchcmd")}, p) &&
				!under(p, pkg("internal/testenv")) && !under(p, pkg("internal/synthetic"))
		},
		forbid: func(_, dep string) bool {
			return under(dep, pkg("internal/synthetic")) || under(dep, pkg("internal/testenv"))
		},
		reason: "made-up titles and test helpers must not be reachable from the worker, the backfill or the gateway's server",
	},
	{
		name:       "layout imports nothing of ours",
		from:       func(p string) bool { return p == pkg("internal/layout") },
		forbid:     func(_, dep string) bool { return ours(dep) },
		transitive: true,
		reason:     "every package, transcode included, may depend on the object layout",
	},
}

// violations lists every breach of rules in g, each with the offending
// import chain.
func violations(g graph, rules []rule) []string {
	var out []string
	froms := make([]string, 0, len(g))
	for p := range g {
		froms = append(froms, p)
	}
	slices.Sort(froms)
	for _, r := range rules {
		for _, p := range froms {
			if !r.from(p) {
				continue
			}
			if !r.transitive {
				for _, dep := range g[p] {
					if r.forbid(p, dep) {
						out = append(out, fmt.Sprintf("%s: %s imports %s (%s)", r.name, p, dep, r.reason))
					}
				}
				continue
			}
			// Breadth first: the chain reported is a shortest one.
			prev := map[string]string{p: ""}
			queue := []string{p}
			for len(queue) > 0 {
				cur := queue[0]
				queue = queue[1:]
				for _, dep := range g[cur] {
					if _, seen := prev[dep]; seen {
						continue
					}
					prev[dep] = cur
					if r.forbid(p, dep) {
						chain := []string{dep}
						for at := cur; at != ""; at = prev[at] {
							chain = append(chain, at)
						}
						slices.Reverse(chain)
						out = append(out, fmt.Sprintf("%s: %s (%s)", r.name, strings.Join(chain, " → "), r.reason))
						continue
					}
					queue = append(queue, dep)
				}
			}
		}
	}
	return out
}

func loadGraph(t *testing.T) graph {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	g := graph{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			g[f[0]] = f[1:]
		}
	}
	return g
}

// TestImportGraph holds the module to its security rules.
func TestImportGraph(t *testing.T) {
	g := loadGraph(t)
	for _, p := range []string{"internal/packager", "internal/keys", "internal/storage", "internal/transcode", "internal/layout", "internal/segcrypt"} {
		if _, ok := g[pkg(p)]; !ok {
			t.Fatalf("%s is not in the graph: a rule would pass vacuously", p)
		}
	}
	for _, v := range violations(g, rules) {
		t.Error(v)
	}
}

// TestRulesCatch proves the rules fail, with the chain, on a graph that
// breaks each of them.
func TestRulesCatch(t *testing.T) {
	az := "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	g := graph{
		pkg("internal/pipeline"):   {pkg("internal/segcrypt"), pkg("internal/packager")},
		pkg("internal/packager"):   {pkg("internal/segcrypt"), pkg("internal/storage")},
		pkg("internal/verify"):     {pkg("internal/segcrypt")},
		pkg("internal/segcrypt"):   {"crypto/aes"},
		pkg("internal/keys"):       {pkg("internal/catalog")},
		pkg("internal/catalog"):    {pkg("internal/util")},
		pkg("internal/util"):       {az},
		pkg("internal/storage"):    {pkg("internal/storage/fs"), az},
		pkg("internal/storage/fs"): {pkg("internal/layout")},
		pkg("internal/transcode"):  {pkg("internal/probe")},
		pkg("internal/probe"):      {pkg("internal/packager")},
		pkg("internal/layout"):     {"fmt", pkg("internal/ids")},
		pkg("internal/gateway"):    {pkg("internal/synthetic")},
		pkg("cmd/gateway"):         {pkg("internal/gateway"), pkg("internal/synthetic")},
	}
	got := violations(g, rules)
	want := []string{
		"only the packager encrypts: " + pkg("internal/pipeline") + " imports " + pkg("internal/segcrypt"),
		"keys never reach blob storage: " + pkg("internal/keys") + " → " + pkg("internal/catalog") + " → " + pkg("internal/util") + " → " + az,
		"storage knows nothing of ours: " + pkg("internal/storage/fs") + " → " + pkg("internal/layout"),
		"storage knows nothing of ours: " + pkg("internal/storage") + " → " + pkg("internal/storage/fs") + " → " + pkg("internal/layout"),
		"transcode knows neither keys nor storage: " + pkg("internal/transcode") + " → " + pkg("internal/probe") + " → " + pkg("internal/packager"),
		"layout imports nothing of ours: " + pkg("internal/layout") + " → " + pkg("internal/ids"),
		"fixtures stay out of production packages: " + pkg("internal/gateway") + " imports " + pkg("internal/synthetic"),
	}
	if len(got) != len(want) {
		t.Fatalf("got %d violations, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for _, w := range want {
		found := false
		for _, v := range got {
			if strings.HasPrefix(v, w+" (") || strings.HasPrefix(v, w+" ") {
				found = true
			}
		}
		if !found {
			t.Errorf("missing violation %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}
	// The module's real graph with one bad edge added fails too.
	real := loadGraph(t)
	real[pkg("internal/gateway")] = append(real[pkg("internal/gateway")], pkg("internal/segcrypt"))
	if v := violations(real, rules); len(v) != 1 || !strings.Contains(v[0], pkg("internal/gateway")) {
		t.Errorf("an added gateway → segcrypt edge gave %q", v)
	}
}
