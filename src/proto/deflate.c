/* placeholder: implemented in progress */
typedef int kz_placeholder_deflate;
