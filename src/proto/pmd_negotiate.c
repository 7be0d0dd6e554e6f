/* placeholder: implemented in progress */
typedef int kz_placeholder_pmd_negotiate;
