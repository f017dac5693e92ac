select
    product_id,
    name,
    category,
    price,
    updated_at
from {{ ref('stg_products') }}
