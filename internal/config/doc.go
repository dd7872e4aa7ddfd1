package config

import (
	"fmt"
	"regexp"
	"strings"
)

// DocTables reads the tables of README.md's "## Configuration" section:
// one map per table, from each variable to its documented default. A
// default cell holds `literal` defaults, or prose (empty, none: …) for
// none; a row naming several variables (`A`, `B`) pairs them with the
// cell's comma-separated defaults.
func DocTables(markdown string) ([]map[string]string, error) {
	_, sec, ok := strings.Cut(markdown, "\n## Configuration\n")
	if !ok {
		return nil, fmt.Errorf("no \"## Configuration\" section")
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	var tables []map[string]string
	var cur map[string]string
	for line := range strings.SplitSeq(sec, "\n") {
		if !strings.HasPrefix(line, "|") {
			cur = nil
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) < 3 || strings.HasPrefix(cells[0], " ---") || strings.TrimSpace(cells[0]) == "variable" {
			if cur == nil {
				cur = map[string]string{}
				tables = append(tables, cur)
			}
			continue
		}
		vars := backticked.FindAllStringSubmatch(cells[0], -1)
		defs := []string{strings.TrimSpace(cells[1])}
		if len(vars) > 1 && strings.Contains(defs[0], ", ") {
			defs = strings.Split(defs[0], ", ")
		}
		for len(defs) < len(vars) && len(defs) == 1 { // one prose default for all: "empty"
			defs = append(defs, defs[0])
		}
		if len(defs) != len(vars) {
			return nil, fmt.Errorf("row %q: %d variables, %d defaults", line, len(vars), len(defs))
		}
		for i, v := range vars {
			def := ""
			if m := backticked.FindStringSubmatch(defs[i]); m != nil && strings.HasPrefix(defs[i], "`") {
				def = m[1]
			}
			cur[v[1]] = def
		}
	}
	return tables, nil
}

var backticked = regexp.MustCompile("`([^`]*)`")

// CompareDoc lists the differences between a program's settings and the
// README: every setting must be documented with its default, in own or one
// of shared; every variable of own must be a setting.
func CompareDoc(fields []Field, own map[string]string, shared ...map[string]string) []string {
	var diffs []string
	known := map[string]bool{}
	for _, f := range fields {
		known[f.Env] = true
		def, ok := own[f.Env]
		for _, t := range shared {
			if !ok {
				def, ok = t[f.Env]
			}
		}
		switch {
		case !ok:
			diffs = append(diffs, f.Env+": not in README.md's configuration tables")
		case def != f.Default:
			diffs = append(diffs, fmt.Sprintf("%s: README.md says default %q, the program %q", f.Env, def, f.Default))
		}
	}
	for v := range own {
		if !known[v] {
			diffs = append(diffs, v+": in README.md's table but not a setting of the program")
		}
	}
	return diffs
}

// DocFileVars lists the NAME_FILE variables that README.md's
// "## Configuration" section names (in backticks), by NAME.
func DocFileVars(markdown string) map[string]bool {
	_, sec, _ := strings.Cut(markdown, "\n## Configuration\n")
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	out := map[string]bool{}
	for _, m := range backticked.FindAllStringSubmatch(sec, -1) {
		if name, ok := strings.CutSuffix(m[1], "_FILE"); ok && name != "" && !strings.ContainsAny(name, " =/") {
			out[name] = true
		}
	}
	return out
}

// CompareFileDoc lists the differences between the settings that may come
// from a file and the NAME_FILE variables the README names: every such
// setting's NAME_FILE is named, and a named NAME_FILE of one of these
// settings is one that accepts a file.
func CompareFileDoc(fields []Field, documented map[string]bool) []string {
	var diffs []string
	for _, f := range fields {
		switch {
		case f.File && !documented[f.Env]:
			diffs = append(diffs, f.Env+": accepts "+f.Env+"_FILE, which README.md's configuration section does not name")
		case !f.File && documented[f.Env]:
			diffs = append(diffs, f.Env+": README.md names "+f.Env+"_FILE, but the setting does not accept a file")
		}
	}
	return diffs
}
