package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tschsensor/tschsensor/dissect"
)

// keytabEnv holds keytab paths separated like PATH (':' on Unix).
const keytabEnv = "TSCHSENSOR_KEYTAB"

// keytabList is the repeatable --keytab flag.
type keytabList []string

func (k *keytabList) String() string { return strings.Join(*k, string(filepath.ListSeparator)) }

func (k *keytabList) Set(v string) error {
	if v == "" {
		return fmt.Errorf("empty keytab path")
	}
	*k = append(*k, v)
	return nil
}

// keytabPaths are the --keytab files, then those of $TSCHSENSOR_KEYTAB.
func (k keytabList) paths() []string {
	p := append([]string(nil), k...)
	for _, e := range filepath.SplitList(os.Getenv(keytabEnv)) {
		if e != "" {
			p = append(p, e)
		}
	}
	return p
}

// loadKerberosKeys gathers the Kerberos keys of the keytabs and of the
// credentials' key lines (nil when there are none). A keytab readable by
// group or others is warned about: it opens every ticket of its services.
// Messages name files and counts, never keys.
func loadKerberosKeys(paths []string, creds *dissect.Credentials, warn io.Writer) (*dissect.KerberosKeys, error) {
	ks := &dissect.KerberosKeys{}
	if creds != nil {
		ks.Add(creds.KerberosKeys()...)
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("keytab: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(warn, "tschsensor: warning: keytab %s is accessible by group or others (mode %04o); use chmod 600\n", p, fi.Mode().Perm())
		}
		if fi.Size() > dissect.MaxKeytabLen {
			return nil, fmt.Errorf("keytab %s: %d bytes, more than %d", p, fi.Size(), dissect.MaxKeytabLen)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("keytab: %w", err)
		}
		keys, skipped, err := dissect.ParseKeytab(data)
		clear(data)
		if err != nil {
			return nil, fmt.Errorf("keytab %s: %w", p, err)
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("keytab %s: no usable key (%d of unsupported types, %d malformed)", p, skipped.UnsupportedEType, skipped.BadKey)
		}
		if skipped.UnsupportedEType+skipped.BadKey > 0 {
			fmt.Fprintf(warn, "tschsensor: keytab %s: %d keys loaded, %d of unsupported types and %d malformed skipped\n",
				p, len(keys), skipped.UnsupportedEType, skipped.BadKey)
		}
		ks.Add(keys...)
	}
	if ks.Len() == 0 {
		return nil, nil
	}
	return ks, nil
}
