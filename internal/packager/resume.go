package packager

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hlsvault/hlsvault/internal/catalog"
)

// Chunked transcoding puts the objects of one version from several
// workers: the coordinator begins the version with every key it will need
// (BeginWhole), records them wrapped in PostgreSQL, and each piece resumes
// the version from them (Resume). No piece makes a key, so the version has
// one key sequence whichever worker stored what.

// BeginWhole is Begin with the keys of every key period of duration
// seconds of media made at once, as the pieces that Resume the version
// need them.
func (p *Packager) BeginWhole(prefix, keyURITemplate string, duration float64) (*Version, error) {
	v, err := p.Begin(prefix, keyURITemplate)
	if err != nil {
		return nil, err
	}
	last, err := p.PeriodOf(max(duration, 0))
	if err != nil {
		return nil, err
	}
	for n := 1; n <= last; n++ {
		if _, err := v.KeyAt(float64(n) * p.opts.KeyPeriod.Seconds()); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Resume returns the version under prefix whose keys are wrapped (as
// Version.WrappedKeys returned them), unwrapped with the keyring. The
// version is sealed: an object in a period without a key is refused, not
// given a new key.
func (p *Packager) Resume(prefix, keyURITemplate string, wrapped []catalog.WrappedKey) (*Version, error) {
	if !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("packager: prefix %q does not end in /", prefix)
	}
	if !strings.Contains(keyURITemplate, "{key_id}") {
		return nil, fmt.Errorf("packager: key URI template %q has no {key_id}", keyURITemplate)
	}
	if p.keyring == nil {
		return nil, errors.New("packager: no key-encryption key configured")
	}
	if err := catalog.CheckKeys(wrapped); err != nil {
		return nil, fmt.Errorf("packager: resume %s: %w", prefix, err)
	}
	v := &Version{p: p, prefix: prefix, tmpl: keyURITemplate, seed: newSeed(), keys: map[int]*periodKey{}, byID: map[string]*periodKey{}, sealed: true}
	for _, w := range wrapped {
		ck, err := p.keyring.Unwrap(w.KEKID, w.KeyID, w.Wrapped)
		if err != nil {
			return nil, fmt.Errorf("packager: resume %s: key %s: %w", prefix, w.KeyID, err)
		}
		k := &periodKey{ck: ck, Key: Key{Period: w.Period, Start: w.Start, ID: w.KeyID,
			URI: strings.ReplaceAll(keyURITemplate, "{key_id}", w.KeyID)}}
		v.keys[w.Period], v.byID[w.KeyID] = k, k
	}
	return v, nil
}
