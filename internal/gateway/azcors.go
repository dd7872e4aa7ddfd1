package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
)

// corsMarker is an allowed header that marks the CORS rule this package
// manages, so that it can update its own rule and leave the account's
// others alone.
const corsMarker = "x-hlsvault-gateway"

// maxRuleOrigins is Azure's limit of origins in one CORS rule.
const maxRuleOrigins = 64

// AllowStorageOrigins lets browser players on these origins GET segments
// from the Azure Blob service through their SAS URLs (hls.js fetches them
// with XHR, so the service must answer with CORS headers). It keeps one CORS
// rule of its own, marked by an allowed header, adding the origins to it
// (the oldest are dropped past Azure's 64), and leaves the account's other
// rules alone. The gateway never does this by itself: an operator runs
// `gateway storage-cors` once per account, as `make demo` does for Azurite.
func AllowStorageOrigins(ctx context.Context, connectionString string, origins []string) error {
	return updateStorageOrigins(ctx, connectionString, origins, nil)
}

// RemoveStorageOrigins takes origins out of the rule AllowStorageOrigins
// keeps, dropping the rule when none are left.
func RemoveStorageOrigins(ctx context.Context, connectionString string, origins []string) error {
	return updateStorageOrigins(ctx, connectionString, nil, origins)
}

func updateStorageOrigins(ctx context.Context, connectionString string, add, remove []string) error {
	if connectionString == "" {
		return errors.New("gateway: storage-cors: AZURE_STORAGE_CONNECTION_STRING is not set")
	}
	for _, o := range add {
		if o == "*" || !strings.Contains(o, "://") || strings.ContainsAny(o, ", ") {
			return fmt.Errorf("gateway: storage-cors: origin %q: want scheme://host[:port], not '*'", o)
		}
	}
	sc, err := service.NewClientFromConnectionString(connectionString, nil)
	if err != nil {
		return errors.New("gateway: storage-cors: the connection string is not valid")
	}
	props, err := sc.GetProperties(ctx, nil)
	if err != nil {
		return fmt.Errorf("gateway: storage-cors: read service properties: %w", err)
	}
	var (
		rules   []*service.CORSRule
		current []string
	)
	for _, r := range props.CORS {
		if r == nil {
			continue
		}
		if r.AllowedHeaders != nil && strings.Contains(*r.AllowedHeaders, corsMarker) {
			if r.AllowedOrigins != nil {
				current = strings.Split(*r.AllowedOrigins, ",")
			}
			continue
		}
		rules = append(rules, r)
	}
	next := slices.DeleteFunc(slices.Clone(current), func(o string) bool { return o == "" || slices.Contains(remove, o) || slices.Contains(add, o) })
	next = append(next, add...)
	if len(next) > maxRuleOrigins {
		next = next[len(next)-maxRuleOrigins:]
	}
	if slices.Equal(next, current) {
		return nil
	}
	if len(next) > 0 {
		rules = append(rules, &service.CORSRule{
			AllowedOrigins:  to.Ptr(strings.Join(next, ",")),
			AllowedMethods:  to.Ptr("GET,HEAD"),
			AllowedHeaders:  to.Ptr("range," + corsMarker),
			ExposedHeaders:  to.Ptr("content-length,content-range"),
			MaxAgeInSeconds: to.Ptr(int32(3600)),
		})
	}
	if rules == nil {
		// A nil list is left out of the request and would change nothing;
		// an empty one clears the rules.
		rules = []*service.CORSRule{}
	}
	if _, err := sc.SetProperties(ctx, &service.SetPropertiesOptions{CORS: rules}); err != nil {
		return fmt.Errorf("gateway: storage-cors: %w", err)
	}
	return nil
}
