package apps

import "tlsedge/apps/appopt"

// Options are the user-facing settings of what a mount serves; they are
// defined in package appopt, so that the server can carry them without
// linking the apps.
type Options = appopt.Options
