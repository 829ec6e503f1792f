// oci-validate checks an OCI runtime bundle (config.json + rootfs) with the runtime-tools
// validate library, host-specific checks on, platform linux.
//
// Usage: oci-validate [-schema DIR] [-level must|should] BUNDLE
// Prints each violation at or above -level on its own line (stdout) and exits 1 when there is
// one, 0 when the bundle is valid (lower-level ones go to stderr as warnings); 2 on bad usage.
//
// It runs the checks of Validator.CheckAll except two that cannot work here: CheckJSONSchema
// fetches the schema from GitHub (no network), so the schema is loaded from the packaged
// runtime-spec instead; CheckSemVer accepts only the library's own "1.0.2-dev", so any 1.0.2
// (release or -dev) is accepted, other versions are reported.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/blang/semver"
	"github.com/hashicorp/go-multierror"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	rfc2119 "github.com/opencontainers/runtime-tools/error"
	"github.com/opencontainers/runtime-tools/specerror"
	"github.com/opencontainers/runtime-tools/validate"
	"github.com/xeipuuv/gojsonschema"
)

func main() {
	schemaDir := flag.String("schema", "/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema",
		"directory holding the runtime-spec config-schema.json")
	levelName := flag.String("level", "must", "lowest RFC 2119 level reported as an error (must, should, may)")
	flag.Parse()
	level, err := rfc2119.ParseLevel(*levelName)
	if flag.NArg() != 1 || err != nil {
		fmt.Fprintln(os.Stderr, "usage: oci-validate [-schema DIR] [-level must|should|may] BUNDLE")
		os.Exit(2)
	}
	bundle := flag.Arg(0)
	v, err := validate.NewValidatorFromPath(bundle, true, "linux")
	if err != nil {
		fmt.Println(oneLine(err))
		os.Exit(1)
	}
	errs := multierror.Append(nil, checkVersionAndSchema(filepath.Join(bundle, "config.json"), *schemaDir))
	for _, check := range []func() error{v.CheckPlatform, v.CheckRoot, v.CheckMandatoryFields, v.CheckMounts,
		v.CheckProcess, v.CheckLinux, v.CheckAnnotations, v.CheckHooks} {
		errs = multierror.Append(errs, check())
	}
	failed := false
	for _, e := range errs.Errors {
		if se, ok := e.(*specerror.Error); ok && se.Err.Level < level {
			fmt.Fprintln(os.Stderr, "warning:", oneLine(e))
			continue
		}
		fmt.Println(oneLine(e))
		failed = true
	}
	if failed {
		os.Exit(1)
	}
}

// checkVersionAndSchema validates the raw config.json against the packaged JSON schema and
// checks that its ociVersion is the spec version this library knows (1.0.2).
func checkVersionAndSchema(configPath, schemaDir string) (errs error) {
	content, err := os.ReadFile(configPath)
	if err != nil {
		return err
	}
	var head struct {
		Version string `json:"ociVersion"`
	}
	if err := json.Unmarshal(content, &head); err != nil {
		return err
	}
	want := semver.MustParse(rspec.Version)
	if got, err := semver.Parse(head.Version); err != nil {
		errs = multierror.Append(errs, fmt.Errorf("ociVersion %q is not valid SemVer: %v", head.Version, err))
	} else if got.Major != want.Major || got.Minor != want.Minor || got.Patch != want.Patch {
		errs = multierror.Append(errs, fmt.Errorf("ociVersion %q: this validator handles %d.%d.%d only",
			head.Version, want.Major, want.Minor, want.Patch))
	}
	abs, err := filepath.Abs(filepath.Join(schemaDir, "config-schema.json"))
	if err != nil {
		return multierror.Append(errs, err)
	}
	result, err := gojsonschema.Validate(gojsonschema.NewReferenceLoader("file://"+abs),
		gojsonschema.NewBytesLoader(content))
	if err != nil {
		return multierror.Append(errs, fmt.Errorf("schema: %v", err))
	}
	for _, re := range result.Errors() {
		errs = multierror.Append(errs, fmt.Errorf("schema: %s", re.String()))
	}
	return errs
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
