#!/bin/sh
# Writes mit-ktutil.keytab with MIT ktutil (Debian krb5-user): keys derived
# from a lab password with MIT's default salt, so the test can check our AD
# salt for the machine account srv$ and our keytab parser against MIT's
# writer. The password is a lab value, also in dissect/krbvectors_test.go.
set -e
out=${1:-dissect/testdata/krb5/mit-ktutil.keytab}
pw='Srv-Machine-Pass-2026!'
rm -f "$out"
{
	for spn in host cifs; do
		for e in aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96 arcfour-hmac; do
			[ "$spn" = cifs ] && [ "$e" != aes256-cts-hmac-sha1-96 ] && continue
			printf 'addent -password -p %s/srv.lab.example@LAB.EXAMPLE -k 3 -e %s\n%s\n' "$spn" "$e" "$pw"
		done
	done
	printf 'wkt %s\nquit\n' "$out"
} | ktutil >/dev/null
klist -kte "$out"
