//go:build !unix

package netstore

import "os"

// lockFile only creates the lock file where flock is missing: there the
// store is safe for concurrent use within one process (Store's mutex) but
// not across processes.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}
